"""The contract between a generation engine and per-request decoding controls (grammar, penalties, logprobs).

Every engine (today's batched ``generate``, a static-cache continuous-batching engine, any later
one) honours a row's ``RowControls`` at every decoding step, in this order:

1. ``logits = row logits (1-D, vocab, float32 on the model's device)``
2. ``logit_bias`` added, then presence / frequency penalties over the row's generated tokens
3. each ``processors[i](generated, logits)`` in order (grammar masks go last), returning logits
4. temperature / top_p sampling (greedy at temperature 0) with the row's own generator
5. when ``top_logprobs is not None``: the chosen token's log-probability and the ``top_logprobs``
   best alternatives (after steps 2-3, before temperature) reported with the token

``generated`` holds the row's completion tokens so far (prompt excluded), so a stateful
processor (a grammar matcher) can advance itself by the tokens it has not seen yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class RowLogitsProcessor(Protocol):
    """Adjusts one row's next-token logits; may modify ``logits`` in place and return it."""

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor: ...


@dataclass
class RowControls:
    """What one request asks of the decoder beyond temperature/top_p/stop/max_tokens."""

    processors: list[RowLogitsProcessor] = field(default_factory=list)
    logit_bias: dict[int, float] = field(default_factory=dict)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    #: None: no logprobs; 0..20: the chosen token's logprob plus this many alternatives
    top_logprobs: int | None = None

    @property
    def plain(self) -> bool:
        """True when nothing here changes decoding (an engine may take its fastest path)."""
        return (
            not self.processors
            and not self.logit_bias
            and self.presence_penalty == 0.0
            and self.frequency_penalty == 0.0
            and self.top_logprobs is None
        )
