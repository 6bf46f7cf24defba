"""Memory of the current process: RSS from psutil, GPU bytes from torch when it is loaded."""

from __future__ import annotations

import gc
import sys

import psutil

from model_backends.base.protocol import MemoryUsage


def current_memory() -> MemoryUsage:
    """RSS of this process and, if torch is already imported and sees a GPU, its GPU bytes.

    torch is never imported here: a backend that does not use it pays nothing.
    """
    rss = psutil.Process().memory_info().rss
    return MemoryUsage(rss_bytes=rss, gpu_bytes=_torch_gpu_bytes())


def _torch_gpu_bytes() -> int | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        return int(sum(torch.cuda.memory_reserved(i) for i in range(torch.cuda.device_count())))
    except Exception:  # noqa: BLE001 - a broken CUDA setup must not break a pong
        return None


def release_memory() -> None:
    """Give freed memory back after an unload: collect garbage, empty torch's CUDA cache."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
    _malloc_trim()


def _malloc_trim() -> None:
    """Ask glibc to return freed heap pages to the OS, so RSS falls after an unload."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
