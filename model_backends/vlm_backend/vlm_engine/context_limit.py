"""The model's context window: a prompt that cannot fit is refused before anything is allocated.

First by bytes, without tokenizing: a token never stands for more than the vocabulary's longest
token, so ``bytes / longest`` tokens is a floor; a 5 MB prompt to an 8k-token model is refused in
microseconds. Otherwise the rendered prompt is tokenized and counted (images are counted by the
engine once encoded, ``check_encoded``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from model_backends.base.errors import ErrorCode, HubError

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048


class ContextLengthExceededError(HubError):
    """The prompt plus the requested completion does not fit the model's context window."""

    code = ErrorCode.CONTEXT_LENGTH_EXCEEDED


def context_window(model: Any) -> int:
    """Tokens the model attends to: ``max_position_embeddings`` of its (text) config."""
    config = getattr(model, "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        value = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_CONTEXT


class ContextLimit:
    """Checks prompts against ``window`` tokens with ``tokenizer``."""

    def __init__(self, tokenizer: Any, window: int) -> None:
        self.tokenizer = tokenizer
        self.window = window
        self._longest: int | None = None
        self._lock = threading.Lock()

    def longest_token_bytes(self) -> int:
        """The most UTF-8 bytes one vocabulary entry decodes to (computed once per model)."""
        with self._lock:
            if self._longest is None:
                vocab = self.tokenizer.get_vocab()
                convert = self.tokenizer.convert_tokens_to_string
                self._longest = max(1, *(len(convert([t]).encode("utf-8", "replace")) for t in vocab))
            return self._longest

    def check_bytes(self, text_bytes: int, max_tokens: int, explicit: bool) -> None:
        """Refuse a prompt whose bytes alone prove it cannot fit (no tokenizing)."""
        floor = text_bytes // self.longest_token_bytes()
        if floor > self.window:
            raise self._error(f"at least {floor}", max_tokens if explicit else 0)

    def fit(self, prompt_tokens: int, max_tokens: int, explicit: bool) -> int:
        """The max_tokens to generate with: the asked number if it fits, else a 400 (or the room left)."""
        room = self.window - prompt_tokens
        if room <= 0 or (explicit and max_tokens > room):
            raise self._error(str(prompt_tokens), max_tokens if explicit else 0)
        return min(max_tokens, room)

    def _error(self, prompt: str, completion: int) -> ContextLengthExceededError:
        asked = f"{prompt} tokens in the messages" + (f" and {completion} in the completion" if completion else "")
        return ContextLengthExceededError(
            f"This model's maximum context length is {self.window} tokens; the request has {asked}. "
            "Shorten the messages or lower max_tokens."
        )
