"""A deterministic chat backend for testing the gateway: it "generates" the last user message back.

Input is the VLM backend's: ``data.messages`` (OpenAI shape, images as ``image_url`` data
URLs), ``max_tokens`` (words), ``stop``, ``stream``. Output is ``{text, finish_reason, usage}``;
streamed words go out as partials ``{"delta": ...}``. ``CHAT_WORD_DELAY`` (seconds, env) is the
time per word, so tests can watch a stream arrive; a cancelled request stops between words.
``CHAT_MODEL_MB`` makes a load hold that many megabytes, so an unload visibly frees memory;
``CHAT_LOAD_FAIL`` makes every load fail with that message.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import time
from typing import Any

from model_backends.base import BadRequestError, BaseModelBackend, current_request, run_backend

DEFAULT_MAX_TOKENS = 64
#: what this backend honours (sampling options are accepted: echoing is the same at any temperature)
KNOWN_FIELDS = frozenset({"messages", "max_tokens", "stop", "stream", "temperature", "top_p", "seed"})


class ChatBackend(BaseModelBackend):
    """Echoes the last user message word by word, as an LLM would stream tokens."""

    name = "chat"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.word_delay = float(os.environ.get("CHAT_WORD_DELAY", "0.01"))
        self.weights: bytes | None = None

    def initialize_model(self) -> None:
        time.sleep(float(os.environ.get("CHAT_LOAD_SECONDS", "0")))
        if os.environ.get("CHAT_LOAD_FAIL"):
            raise FileNotFoundError(os.environ["CHAT_LOAD_FAIL"])
        self.weights = b"\x01" * (int(os.environ.get("CHAT_MODEL_MB", "0")) * 1024 * 1024)

    def cleanup(self) -> None:
        self.weights = None

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(data) - KNOWN_FIELDS)
        if unknown:  # never ignore a field: a client must learn that it had no effect
            raise BadRequestError(f"data.{unknown[0]} is not supported by the chat test backend")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequestError("data.messages must be a non-empty list")
        texts: list[str] = []
        last_user, images = "", []
        for message in messages:
            text, found = _read_message(message)
            texts.append(text)
            if message.get("role") == "user":
                last_user, images = text, found
        words = [f"<image:{image}>" for image in images] + last_user.split()
        max_tokens = int(data.get("max_tokens") or DEFAULT_MAX_TOKENS)
        stop = data.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        text, finish_reason, used = self._generate(words, max_tokens, stop, bool(data.get("stream")))
        prompt_tokens = sum(len(t.split()) for t in texts)
        return {
            "text": text,
            "finish_reason": finish_reason,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": used, "total_tokens": prompt_tokens + used},
            "images": len(images),
            "system_fingerprint": f"chat-backend-{os.getpid()}",
        }

    def _generate(self, words: list[str], max_tokens: int, stop: list[str], stream: bool) -> tuple[str, str, int]:
        ctx = current_request()
        streaming = stream or (ctx is not None and ctx.stream)
        out, sent, used = "", 0, 0
        for word in words:
            if used >= max_tokens:
                return out, "length", used
            if ctx is not None and ctx.cancelled:
                return out, "cancelled", used
            time.sleep(self.word_delay)
            out += (" " if out else "") + word
            used += 1
            cut = min((i for i in (out.find(s) for s in stop if s) if i >= 0), default=-1)
            if cut >= 0:
                out = out[:cut]
                if streaming and ctx is not None and len(out) > sent:
                    ctx.emit_partial({"delta": out[sent:]})
                return out, "stop", used
            safe = len(out) - _held_back(out, stop)
            if streaming and ctx is not None and safe > sent:
                ctx.emit_partial({"delta": out[sent:safe]})
                sent = safe
        if streaming and ctx is not None and len(out) > sent:
            ctx.emit_partial({"delta": out[sent:]})
        return out, "stop", used


def _held_back(text: str, stop: list[str]) -> int:
    """Length of the longest end of ``text`` that may be the start of a stop sequence."""
    return max((n for s in stop for n in range(1, len(s)) if text.endswith(s[:n])), default=0)


def _read_message(message: Any) -> tuple[str, list[str]]:
    """The text of one message and a description of each image it carries."""
    if not isinstance(message, dict):
        raise BadRequestError("each message must be an object")
    content = message.get("content")
    if isinstance(content, str) or content is None:
        return content or "", []
    texts, images = [], []
    for part in content:
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            images.append(_describe_image(part.get("image_url", {}).get("url", "")))
        else:
            raise BadRequestError(f"unsupported content part {part.get('type')!r}")
    return " ".join(texts), images


def _describe_image(url: str) -> str:
    """``png 32x24`` for a PNG data URL, ``<mime> N bytes`` for others; anything else is refused."""
    if not url.startswith("data:") or ";base64," not in url:
        raise BadRequestError("image_url must be a base64 data URL (data:image/...;base64,...)")
    head, _, b64 = url.partition(";base64,")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(f"image_url is not valid base64: {exc}") from exc
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24:
        width, height = struct.unpack(">II", raw[16:24])
        return f"png{width}x{height}"
    return f"{head[5:]}:{len(raw)}bytes"


if __name__ == "__main__":
    run_backend(ChatBackend)
