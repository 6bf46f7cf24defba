"""Picks each row's next token from a step's logits: per-row controls, temperature, top_p, logprobs.

Rows that ask for nothing special (``RowControls.plain``, no seed) are sampled together with a
few batched tensor operations and one transfer to the host; every other row goes through the
order that ``row_controls`` defines, on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .row_controls import RowControls


@dataclass
class RowSampling:
    """One row's decoding settings and the state they need (its tokens so far, its generator)."""

    temperature: float = 0.0
    top_p: float = 1.0
    controls: RowControls = field(default_factory=RowControls)
    generator: torch.Generator | None = None
    #: EOS ids that may not be chosen yet (``ignore_eos`` before max_tokens)
    banned: Sequence[int] = ()
    generated: list[int] = field(default_factory=list)

    @property
    def plain(self) -> bool:
        return self.controls.plain and self.generator is None


@dataclass
class Sampled:
    """A row's chosen token, with its logprob and the best alternatives when the row asked for them."""

    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


def sample_rows(logits: torch.Tensor, rows: Sequence[RowSampling], generator: torch.Generator | None) -> list[Sampled]:
    """Next tokens for ``rows`` (row ``i`` reads ``logits[i]``); extra logits rows are ignored."""
    out: list[Sampled | None] = [None] * len(rows)
    fast = [i for i, row in enumerate(rows) if row.plain]
    if fast:
        for i, token in zip(fast, _sample_plain(logits, [rows[i] for i in fast], fast, generator), strict=True):
            out[i] = Sampled(token)
    for i, row in enumerate(rows):
        if out[i] is None:
            out[i] = sample_one(logits[i].clone(), row, generator)
    return [s for s in out if s is not None]


def _sample_plain(
    logits: torch.Tensor, rows: list[RowSampling], index: list[int], generator: torch.Generator | None
) -> list[int]:
    picked = logits[index] if len(index) != logits.shape[0] else logits
    banned = [i for i, row in enumerate(rows) if row.banned]
    if banned:
        ids = torch.tensor(sorted({t for i in banned for t in rows[i].banned}), device=logits.device)
        picked[torch.tensor(banned, device=logits.device)[:, None], ids[None, :]] = -float("inf")
    greedy = picked.argmax(dim=-1)
    if all(row.temperature == 0.0 for row in rows):
        return [int(t) for t in greedy.tolist()]
    temps = torch.tensor([max(r.temperature, 1e-5) for r in rows], device=logits.device)[:, None]
    top_p = torch.tensor([r.top_p for r in rows], device=logits.device)[:, None]
    probs = _top_p(picked / temps, top_p).softmax(dim=-1)
    drawn = torch.multinomial(probs, 1, generator=generator)[:, 0]
    is_greedy = torch.tensor([r.temperature == 0.0 for r in rows], device=logits.device)
    return [int(t) for t in torch.where(is_greedy, greedy, drawn).tolist()]


def sample_one(logits: torch.Tensor, row: RowSampling, generator: torch.Generator | None) -> Sampled:
    """``row_controls``' order for one row: bias, penalties, processors, (logprobs), sampling."""
    controls = row.controls
    logits = _bias_and_penalties(logits, row)
    for processor in controls.processors:
        logits = processor(row.generated, logits)
    if row.banned:
        logits[list(row.banned)] = -float("inf")
    token = _pick(logits, row, row.generator or generator)
    if controls.top_logprobs is None:
        return Sampled(token)
    logprobs = logits.log_softmax(dim=-1).clamp(min=-9999.0)  # -inf is not JSON
    top: list[tuple[int, float]] = []
    if controls.top_logprobs > 0:
        values, ids = logprobs.topk(controls.top_logprobs)
        top = list(zip(ids.tolist(), values.tolist(), strict=True))
    return Sampled(token, float(logprobs[token]), top)


def _bias_and_penalties(logits: torch.Tensor, row: RowSampling) -> torch.Tensor:
    controls = row.controls
    if controls.logit_bias:
        ids = torch.tensor(list(controls.logit_bias), dtype=torch.long, device=logits.device)
        bias = torch.tensor(list(controls.logit_bias.values()), dtype=logits.dtype, device=logits.device)
        valid = ids < logits.shape[0]  # ids past this model's vocabulary change nothing
        logits.index_add_(0, ids[valid], bias[valid])
    if row.generated and (controls.presence_penalty or controls.frequency_penalty):
        seen = torch.tensor(row.generated, device=logits.device)
        counts = torch.bincount(seen, minlength=logits.shape[0])[: logits.shape[0]].to(logits.dtype)
        logits -= controls.frequency_penalty * counts + controls.presence_penalty * (counts > 0).to(logits.dtype)
    return logits


def _pick(logits: torch.Tensor, row: RowSampling, generator: torch.Generator | None) -> int:
    if row.temperature == 0.0:
        return int(logits.argmax())
    scaled = _top_p(logits[None] / row.temperature, torch.tensor([[row.top_p]], device=logits.device))
    return int(torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator)[0, 0])


def _top_p(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep, per row, the most likely tokens whose probabilities add up to ``top_p`` (at least one)."""
    if bool((top_p >= 1.0).all()):
        return logits
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    drop = (probs.cumsum(dim=-1) - probs) > top_p
    ordered = ordered.masked_fill(drop, -float("inf"))
    return torch.empty_like(logits).scatter_(-1, order, ordered)


def new_generator(seed: int | None, device: Any) -> torch.Generator | None:
    """A generator of the row's own for a seeded request (same seed, same answer), else None."""
    if seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
