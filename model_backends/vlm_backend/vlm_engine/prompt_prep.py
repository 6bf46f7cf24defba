"""Turns a ChatRequest into model inputs (chat template, tokens, image tensors) in the caller's thread.

This runs in the backend's request thread, before the request reaches the generation thread,
so image preprocessing of one request never stalls the tokens of the others.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .chat_request import ChatRequest
from .model_loader import LoadedModel
from .request_controls import template_kwargs, text_only

logger = logging.getLogger(__name__)


@dataclass
class PreparedPrompt:
    """One request's prompt as tensors on the CPU: token ids ``[1, n]`` and any image inputs."""

    input_ids: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    preprocess_ms: float = 0.0

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    def shape_key(self) -> tuple[Any, ...]:
        """Prompts with equal keys can be prefilled together (their image tensors stack)."""
        return tuple((name, tuple(t.shape[1:])) for name, t in sorted(self.extras.items()))


class PromptPreparer:
    """Applies the chat template and the processor; thread-safe (the tokenizer is shared)."""

    def __init__(self, loaded: LoadedModel, *, images_on_device: bool = True) -> None:
        self.loaded = loaded
        self._lock = threading.Lock()  # a fast tokenizer refuses concurrent calls ("Already borrowed")
        self._image_kwargs: dict[str, Any] = {}
        if images_on_device and loaded.accepts_images and loaded.device.startswith("cuda"):
            self._image_kwargs = _images_on_gpu(loaded)

    def prepare(self, request: ChatRequest) -> PreparedPrompt:
        started = time.perf_counter()
        encoded = self._on_side_stream(request) if request.images and self._image_kwargs else self._encode(request, {})
        extras = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask") and hasattr(v, "shape")}
        return PreparedPrompt(encoded["input_ids"], extras, (time.perf_counter() - started) * 1000)

    def _on_side_stream(self, request: ChatRequest) -> Any:
        """GPU preprocessing on a stream of its own: it need not queue behind the engine's decode steps."""
        stream = torch.cuda.Stream(device=self.loaded.device)
        with torch.cuda.stream(stream):
            encoded = self._encode(request, self._image_kwargs)
        stream.synchronize()
        engine_stream = torch.cuda.default_stream(self.loaded.device)
        for value in encoded.values():
            if isinstance(value, torch.Tensor) and value.is_cuda:
                value.record_stream(engine_stream)  # the allocator must not reuse it while the engine reads it
        return encoded

    def _encode(self, request: ChatRequest, image_kwargs: dict[str, Any]) -> Any:
        loaded = self.loaded
        with self._lock:
            if loaded.accepts_images:
                processor = loaded.processor
                text = processor.apply_chat_template(
                    request.messages, add_generation_prompt=True, tokenize=False, **template_kwargs(request)
                )
                return processor(text=[text], images=request.images or None, return_tensors="pt", **image_kwargs)
            else:
                return loaded.tokenizer.apply_chat_template(
                    text_only(request.messages),
                    add_generation_prompt=True,
                    return_tensors="pt",
                    return_dict=True,
                    **template_kwargs(request),
                )


def _images_on_gpu(loaded: LoadedModel) -> dict[str, Any]:
    """Swap in the processor's torchvision backend and run it on the model's GPU, where torchvision exists.

    The PIL image processor of SmolVLM took ~140 ms per 512x384 image on an H200 host's CPU
    (resizing, splitting into crops, normalising in numpy), more than the prefill itself; the
    same steps as tensor operations on the GPU take a few milliseconds. On CUDA, torchvision
    resizes with bicubic where PIL used Lanczos (transformers warns once).
    """
    if importlib.util.find_spec("torchvision") is None or loaded.folder is None:
        return {}
    from transformers import AutoImageProcessor

    try:
        fast = AutoImageProcessor.from_pretrained(loaded.folder, backend="torchvision")
    except (ImportError, ValueError, OSError) as exc:
        logger.warning("image preprocessing stays on the CPU: no torchvision image processor (%s)", exc)
        return {}
    if type(fast).__name__.endswith("Pil"):
        return {}
    from PIL import Image

    try:  # one small image through it now, so a backend that cannot run it stays on the CPU path
        fast([Image.new("RGB", (64, 48))], return_tensors="pt", device=loaded.device)
    except Exception as exc:  # noqa: BLE001 - any failure means: keep the PIL processor
        logger.warning("image preprocessing stays on the CPU: the torchvision processor failed (%s)", exc)
        return {}
    loaded.processor.image_processor = fast
    logger.info("images are preprocessed on %s (%s)", loaded.device, type(fast).__name__)
    return {"device": loaded.device}
