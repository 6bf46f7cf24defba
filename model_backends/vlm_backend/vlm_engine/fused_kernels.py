"""Fused GPU kernels for the decoder's small element-wise steps (RMSNorm, SiLU x up, rotary embedding).

A decode step of a small model on a big GPU is bound by kernel launches, even replayed as a
CUDA graph: each of ~30 layers runs ~35 kernels, most of them element-wise pieces of RMSNorm
(cast, square, mean, add, rsqrt, multiply, cast, scale), the rotary embedding (slices, negation,
concatenation, products, sums) and the gated MLP. Each of those steps below is one function
compiled by ``torch.compile`` (Triton), so it runs as one or two kernels; the matrix products and
attention stay as they are. The compiled functions take plain tensors, so one compilation serves
every layer; dynamic shapes, so one serves every batch and KV bucket (sizes 1 are specialised,
so decode and prefill each get their own). Inductor caches what it compiled on disk
(``TORCHINDUCTOR_CACHE_DIR``, defaulting to ``.compile-cache`` beside the models), so a restart
does not pay the compilation again.

Only on CUDA with Triton; each fused step is checked against the original at load on random
inputs and left out if it differs by more than rounding, so a model whose layers do something
else keeps its own code. The CPU path never changes.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)


def _rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = hidden.dtype
    h = hidden.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.silu(gate) * up


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (_rotate_half(q) * sin), (k * cos) + (_rotate_half(k) * sin)


class FusedKernels:
    """The compiled functions (one instance per engine; compiled lazily at first call).

    ``backend`` is torch.compile's: "inductor" generates the fused Triton kernels; "eager" only
    traces (what the CPU tests use to check the routing without a GPU).
    """

    def __init__(self, backend: str = "inductor") -> None:
        def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
            return torch.compile(fn, dynamic=True, fullgraph=True, backend=backend)

        self.rms_norm: Callable[..., torch.Tensor] = compiled(_rms_norm)
        self.silu_mul: Callable[..., torch.Tensor] = compiled(_silu_mul)
        self.rotary: Callable[..., tuple[torch.Tensor, torch.Tensor]] = compiled(_rotary)


def available(device: str) -> bool:
    """Fusing needs a CUDA device and Triton."""
    return device.startswith("cuda") and torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def fuse_decoder(decoder: Any, device: str, *, backend: str = "inductor") -> dict[str, int]:
    """Route the decoder's RMSNorms, gated MLPs and rotary embedding through fused kernels.

    Returns how many modules of each kind now run fused. The engine calls it only where
    :func:`available` says so.
    """
    kernels = FusedKernels(backend)
    counts = {"rms_norm": 0, "mlp": 0, "rotary": 0}
    kinds = (("rms_norm", _is_rms_norm, _fused_norm_forward), ("mlp", _is_gated_silu_mlp, _fused_mlp_forward))
    for kind, matches, fused_forward in kinds:
        by_class: dict[type, list[Any]] = {}
        for module in decoder.modules():
            if matches(module):
                by_class.setdefault(type(module), []).append(module)
        for modules in by_class.values():  # each class checked on its first module: same class, same math
            forward = fused_forward(kernels)
            if _same(lambda m, x: m(x), forward, modules[0], _probe(modules[0], device)):
                for module in modules:
                    module.forward = types.MethodType(forward, module)
                counts[kind] += len(modules)
    counts["rotary"] = _fuse_rotary(decoder, kernels, device)
    logger.info("fused kernels: %s", ", ".join(f"{n} {k}" for k, n in counts.items()))
    return counts


def _is_rms_norm(module: Any) -> bool:
    named = type(module).__name__.endswith("RMSNorm")
    return named and hasattr(module, "variance_epsilon") and getattr(module, "weight", None) is not None


def _is_gated_silu_mlp(module: Any) -> bool:
    act = getattr(module, "act_fn", None)
    return (
        all(hasattr(module, name) for name in ("gate_proj", "up_proj", "down_proj"))
        and type(act).__name__ in ("SiLU", "SiLUActivation")
        and type(module).__name__.endswith("MLP")
    )


def _fused_norm_forward(kernels: FusedKernels) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    def forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
        return kernels.rms_norm(hidden_states, self.weight, float(self.variance_epsilon))

    return forward


def _fused_mlp_forward(kernels: FusedKernels) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(kernels.silu_mul(self.gate_proj(x), self.up_proj(x)))  # type: ignore[no-any-return]

    return forward


def _fuse_rotary(decoder: Any, kernels: FusedKernels, device: str) -> int:
    """Swap ``apply_rotary_pos_emb`` in the module that defines the decoder's attention (looked up per call)."""
    attention = next((m for m in decoder.modules() if type(m).__name__.endswith("Attention")), None)
    module = sys.modules.get(type(attention).__module__) if attention is not None else None
    original = getattr(module, "apply_rotary_pos_emb", None)
    if module is None or original is None or getattr(original, "_fused", False):
        return 0
    head_dim = int(getattr(attention, "head_dim", 64))
    dtype = next(decoder.parameters()).dtype
    q = torch.randn(2, 4, 3, head_dim, device=device, dtype=dtype)
    k = torch.randn(2, 2, 3, head_dim, device=device, dtype=dtype)
    angles = torch.randn(2, 3, head_dim, device=device)
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    want, got = original(q, k, cos, sin), kernels.rotary(q, k, cos, sin)
    if not all(_close(a, b) for a, b in zip(want, got, strict=True)):
        logger.warning("rotary embedding left unfused: the fused one differs from %s's", module.__name__)
        return 0

    def fused(
        q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return kernels.rotary(q, k, cos, sin, unsqueeze_dim)

    fused._fused = True  # type: ignore[attr-defined]
    module.apply_rotary_pos_emb = fused  # type: ignore[attr-defined]
    return sum(1 for m in decoder.modules() if type(m) is type(attention))


def _probe(module: Any, device: str) -> torch.Tensor:
    weight = next(module.parameters())
    size = weight.shape[-1] if weight.dim() > 1 else weight.shape[0]
    return torch.randn(2, 3, size, device=device, dtype=weight.dtype)


def _same(
    original: Callable[[Any, torch.Tensor], torch.Tensor],
    fused: Callable[[Any, torch.Tensor], torch.Tensor],
    module: Any,
    x: torch.Tensor,
) -> bool:
    with torch.inference_mode():
        want, got = original(module, x), fused(module, x)
    if _close(want, got):
        return True
    logger.warning("%s left unfused: the fused version differs from its own forward", type(module).__name__)
    return False


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), rtol=2e-2, atol=2e-2))
