"""The decode step with static shapes: per (batch, kv_len) bucket, one forward, replayed as a CUDA graph.

A step takes the rows' last tokens and positions from fixed input buffers and leaves their
next-token logits in a fixed output buffer. On CUDA each bucket's step is captured once as a
CUDA graph at load (the launch overhead of ~30 layers x a dozen kernels was what held plain
``generate`` to tens of tokens per second); on CPU the same function runs eagerly, still on the
static cache and with bucketed shapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from .slot_cache import SlotKV

logger = logging.getLogger(__name__)

MIN_KV_BUCKET = 256


def buckets_up_to(limit: int, first: int) -> list[int]:
    """Powers of two from ``first`` (or 1), the last one raised or cut to ``limit``."""
    sizes, size = [], first
    while size < limit:
        sizes.append(size)
        size *= 2
    sizes.append(limit)
    return sizes


def bucket_for(value: int, sizes: list[int]) -> int:
    """The smallest bucket that holds ``value``."""
    return next(s for s in sizes if s >= value)


class DecodeStep:
    """Runs one decode step for the first ``batch`` slots; ``tokens``/``positions`` are its inputs.

    Args:
        decoder: the model's text decoder (takes input_ids, a 4-D mask, position_ids, a cache).
        head: the output projection (hidden state -> vocabulary logits).
        kv: the slot cache the decoder reads and writes.
        graphs: capture each bucket as a CUDA graph (CUDA only).
    """

    def __init__(self, decoder: Any, head: Any, kv: SlotKV, *, device: str, graphs: bool) -> None:
        self.decoder = decoder
        self.head = head
        self.kv = kv
        self.device = device
        self.batch_sizes = buckets_up_to(kv.slots, 1)
        self.kv_sizes = buckets_up_to(kv.max_len, min(MIN_KV_BUCKET, kv.max_len))
        self.tokens = torch.zeros((kv.slots, 1), dtype=torch.long, device=device)
        self.positions = torch.zeros((kv.slots,), dtype=torch.long, device=device)
        self._arange = torch.arange(kv.max_len, device=device)
        self._graphs: dict[tuple[int, int], tuple[Any, torch.Tensor]] = {}
        self._use_graphs = graphs and device.startswith("cuda")
        self._pool: Any = torch.cuda.graph_pool_handle() if self._use_graphs else None

    def bucket(self, batch: int, kv_len: int) -> tuple[int, int]:
        return bucket_for(batch, self.batch_sizes), bucket_for(kv_len, self.kv_sizes)

    def run(self, batch: int, kv_len: int) -> torch.Tensor:
        """Logits (float32, ``[batch_bucket, vocab]``) of the first ``batch`` slots, attending ``kv_len``."""
        key = self.bucket(batch, kv_len)
        if not self._use_graphs:
            return self._forward(*key)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._capture(*key)
        graph[0].replay()
        return graph[1]

    def warm_up(self, progress: Callable[[str], None] | None = None) -> float:
        """Capture every bucket's graph now (at load) so no request pays for it; returns seconds."""
        if not self._use_graphs:
            return 0.0
        started = time.perf_counter()
        keys = [(b, n) for b in self.batch_sizes for n in self.kv_sizes]
        for i, (batch, kv_len) in enumerate(keys):
            if (batch, kv_len) not in self._graphs:
                self._capture(batch, kv_len)
            if progress is not None:
                progress(f"captured decode graph {i + 1}/{len(keys)} (batch {batch}, kv {kv_len})")
        return time.perf_counter() - started

    def _forward(self, batch: int, kv_len: int) -> torch.Tensor:
        positions = self.positions[:batch]
        mask = self._arange[:kv_len][None, None, None, :] <= positions[:, None, None, None]
        out = self.decoder(
            input_ids=self.tokens[:batch],
            attention_mask=mask,
            position_ids=positions[:, None],
            past_key_values=self.kv.decode_view(batch, kv_len, self.positions),
            use_cache=True,
        )
        return self.head(out.last_hidden_state[:, -1]).float()

    def _capture(self, batch: int, kv_len: int) -> tuple[Any, torch.Tensor]:
        # Warm-up and capture write keys at the bucket's last position: a running row there has
        # written only below its own position, and writes its own key there before reading it.
        saved = self.positions.clone()
        self.positions.fill_(kv_len - 1)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward(batch, kv_len)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):  # one pool: outputs are read before the next replay
            logits = self._forward(batch, kv_len)
        self.positions.copy_(saved)
        self._graphs[(batch, kv_len)] = (graph, logits)
        return graph, logits
