"""Runs several compatible chat requests through one ``model.generate`` call, each streamed on its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from model_backends.base.context import RequestContext

from .chat_request import ChatRequest
from .sampling_controls import RowControlsProcessor, RowState
from .token_sink import TokenSink


@dataclass
class Row:
    """One request inside a batch: what it asked for, where its tokens go, and its outcome."""

    request: ChatRequest
    ctx: RequestContext | None
    sink: TokenSink
    prompt_tokens: int = 0
    error: BaseException | None = None
    result: dict[str, Any] = field(default_factory=dict)
    #: content/tool-call deltas and logprobs of this row (request_controls.AnswerShaper)
    shaper: Any = None

    @property
    def finished(self) -> bool:
        return self.sink.done or (self.ctx is not None and self.ctx.cancelled)


class RowStreamer(BaseStreamer):
    """Hands each row of a step's tokens to that row's sink (one host sync per step, for all rows)."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() first passes the prompt itself
            self._prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(len(self.rows), -1)[:, -1].tolist(), strict=True):
            recorder = row.shaper.recorder if row.shaper is not None else None
            if recorder is not None and not row.sink.done:
                recorder.chose(token)
            row.sink.add(token)

    def end(self) -> None:
        for row in self.rows:
            row.sink.end()


class RowsFinished(StoppingCriteria):
    """A row ends at its own max_tokens, stop sequence, EOS or cancellation; the call ends with the last row."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        done = [row.finished for row in self.rows]
        return torch.tensor(done, dtype=torch.bool).to(input_ids.device, non_blocking=True)


class HoldEos(LogitsProcessor):
    """``ignore_eos`` per row: EOS cannot be chosen before the row has its max_tokens."""

    def __init__(self, rows: list[Row], prompt_len: int, eos_ids: set[int], device: str) -> None:
        self.minimum = [row.request.max_tokens if row.request.ignore_eos else 0 for row in rows]
        self.prompt_len = prompt_len
        self.eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        made = input_ids.shape[1] - self.prompt_len
        held = [i for i, minimum in enumerate(self.minimum) if made < minimum]
        if held and self.eos.numel():
            index = torch.tensor(held, dtype=torch.long).to(scores.device, non_blocking=True)
            scores[index[:, None], self.eos[None, :]] = -float("inf")
        return scores


def generate_rows(
    model: Any, inputs: dict[str, Any], rows: list[Row], sampling: dict[str, Any], eos_ids: set[int]
) -> None:
    """One ``generate`` call for ``rows`` (left-padded ``inputs``); tokens land in each row's sink."""
    prompt_len = int(inputs["input_ids"].shape[1])
    longest = max(row.request.max_tokens for row in rows)
    processors = LogitsProcessorList()
    if any(row.request.ignore_eos for row in rows):
        processors.append(HoldEos(rows, prompt_len, eos_ids, str(inputs["input_ids"].device)))
    if not all(row.request.controls.plain for row in rows):
        states = [
            RowState(row.request.controls, row.shaper.recorder if row.shaper else None, lambda r=row: r.finished)
            for row in rows
        ]
        processors.append(RowControlsProcessor(states, prompt_len))
    model.generate(
        **inputs,
        **sampling,
        max_new_tokens=longest,
        streamer=RowStreamer(rows),
        stopping_criteria=StoppingCriteriaList([RowsFinished(rows)]),
        logits_processor=processors,
    )
