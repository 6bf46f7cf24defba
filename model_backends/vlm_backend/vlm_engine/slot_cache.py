"""A static KV cache of fixed slots: one row per running request, written at each row's own position.

Every layer's keys and values live in one preallocated tensor of shape
``(slots, kv_heads, max_len, head_dim)`` that never moves, so a decode step reads and writes the
same addresses every time (what a CUDA graph needs). A request owns one slot from its prefill to
its last token; its prompt's keys sit at positions ``[0, prompt_len)`` and each decode step writes
one more at the row's own position, so rows of different lengths share a step. A step sees only
a view ``[:batch, :, :kv_len]`` (the bucket), so its cost follows the rows that run, not the
capacity.

The two cache objects below are what a Hugging Face decoder's attention layers call
(``update(keys, values, layer_idx)``); the decoder is always given a ready 4-D mask, so nothing
else of the ``Cache`` interface is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class KVShape:
    """What one layer's cache holds per slot and position."""

    layers: int
    kv_heads: int
    head_dim: int


def kv_shape_of(config: Any) -> KVShape:
    """The KV geometry of a decoder config (Llama-style: heads, kv heads, head_dim)."""
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return KVShape(int(config.num_hidden_layers), kv_heads, head_dim)


class SlotKV:
    """The preallocated keys/values of every layer, ``slots`` rows of ``max_len`` positions."""

    def __init__(self, shape: KVShape, slots: int, max_len: int, *, dtype: torch.dtype, device: str) -> None:
        self.shape = shape
        self.slots = slots
        self.max_len = max_len
        size = (slots, shape.kv_heads, max_len, shape.head_dim)
        self.keys = [torch.zeros(size, dtype=dtype, device=device) for _ in range(shape.layers)]
        self.values = [torch.zeros(size, dtype=dtype, device=device) for _ in range(shape.layers)]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy slot ``src``'s first ``length`` positions to slot ``dst`` (compacting the running rows)."""
        for cache in (*self.keys, *self.values):
            cache[dst, :, :length].copy_(cache[src, :, :length])

    def decode_view(self, batch: int, kv_len: int, positions: torch.Tensor) -> DecodeCache:
        """The cache a decode step of ``batch`` rows over ``kv_len`` positions writes and reads."""
        keys = [k[:batch, :, :kv_len] for k in self.keys]
        values = [v[:batch, :, :kv_len] for v in self.values]
        return DecodeCache(keys, values, positions[:batch])

    def prefill_writer(self, slots: list[int], pads: list[int]) -> PrefillWriter:
        """The cache a (left-padded) prefill of rows bound for ``slots`` writes its prompt into."""
        return PrefillWriter(self, slots, pads)


class DecodeCache:
    """One decode step: row ``i`` writes its new key/value at ``positions[i]``; attention reads the view."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], positions: torch.Tensor) -> None:
        self.keys = keys
        self.values = values
        self.positions = positions
        self.rows = torch.arange(positions.shape[0], device=positions.device)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *_: Any) -> Any:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[self.rows, :, self.positions] = key_states[:, :, 0]
        values[self.rows, :, self.positions] = value_states[:, :, 0]
        return keys, values


class PrefillWriter:
    """A prefill: prompts attend to themselves only; their keys/values are copied into their slots."""

    def __init__(self, kv: SlotKV, slots: list[int], pads: list[int]) -> None:
        self.kv = kv
        self.slots = slots
        self.pads = pads

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *_: Any) -> Any:
        width = key_states.shape[2]
        for row, (slot, pad) in enumerate(zip(self.slots, self.pads, strict=True)):
            self.kv.keys[layer_idx][slot, :, : width - pad].copy_(key_states[row, :, pad:])
            self.kv.values[layer_idx][slot, :, : width - pad].copy_(value_states[row, :, pad:])
        return key_states, value_states
