"""Today's engine honours each row's ``RowControls``: one HF LogitsProcessor that dispatches per row.

``generate`` runs custom logits processors before its temperature/top_p warpers, so this does
steps 2, 3 and 5 of ``row_controls`` in order: logit_bias and presence/frequency penalties, the
row's own processors (grammar masks), then the log-probabilities the row asked for. Rows with
different controls (or none) share one batch; a finished row is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from .row_controls import RowControls


@dataclass
class LogprobRecorder:
    """A row's chosen tokens with their log-probabilities (OpenAI's ``logprobs.content`` entries)."""

    top: int
    decode: Callable[[int], str]
    entries: list[dict[str, Any]] = field(default_factory=list)
    _step: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    _sent: int = 0

    def observe(self, logits: torch.Tensor) -> None:
        """Keep this step's distribution (after bias, penalties and grammar; before temperature)."""
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        values, ids = torch.topk(logprobs, self.top) if self.top else (logprobs[:0], logprobs[:0].long())
        self._step = (logprobs, values, ids)

    def chose(self, token: int) -> None:
        """The token this step produced: record it with the alternatives seen for it."""
        if self._step is None:
            return
        logprobs, values, ids = self._step
        self._step = None
        top = [self._entry(int(t), float(v)) for t, v in zip(ids.tolist(), values.tolist(), strict=True)]
        self.entries.append({**self._entry(token, float(logprobs[token])), "top_logprobs": top})

    def unsent(self) -> list[dict[str, Any]]:
        """Entries not yet handed out (streamed with the next partial answer)."""
        out, self._sent = self.entries[self._sent :], len(self.entries)
        return out

    def _entry(self, token: int, logprob: float) -> dict[str, Any]:
        text = self.decode(token)
        return {"token": text, "logprob": max(logprob, -9999.0), "bytes": list(text.encode("utf-8"))}


@dataclass
class RowState:
    """What the per-row processor needs of one batch row."""

    controls: RowControls
    recorder: LogprobRecorder | None
    finished: Callable[[], bool]


class RowControlsProcessor(LogitsProcessor):
    """Applies every row's RowControls to its own row of the batch's logits."""

    def __init__(self, rows: list[RowState], prompt_len: int) -> None:
        self.rows = rows
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len :]
        for i, row in enumerate(self.rows):
            if row.controls.plain or row.finished():
                continue
            row_scores = scores[i]
            made: list[int] = generated[i].tolist()
            apply_bias_and_penalties(row.controls, made, row_scores)
            for processor in row.controls.processors:
                row_scores = processor(made, row_scores)
            scores[i] = row_scores
            if row.recorder is not None:
                row.recorder.observe(row_scores)
        return scores


def apply_bias_and_penalties(controls: RowControls, made: Sequence[int], logits: torch.Tensor) -> None:
    """OpenAI's logit_bias, then presence (once per seen token) and frequency (per occurrence) penalties."""
    if controls.logit_bias:
        ids = torch.tensor(list(controls.logit_bias), dtype=torch.long, device=logits.device)
        bias = torch.tensor(list(controls.logit_bias.values()), dtype=logits.dtype, device=logits.device)
        valid = ids < logits.shape[-1]
        logits.index_add_(0, ids[valid], bias[valid])
    if made and (controls.presence_penalty or controls.frequency_penalty):
        counts = torch.bincount(torch.tensor(made, dtype=torch.long), minlength=logits.shape[-1])
        counts = counts[: logits.shape[-1]].to(logits.device, dtype=logits.dtype)
        logits -= controls.frequency_penalty * counts + controls.presence_penalty * (counts > 0).to(logits.dtype)
