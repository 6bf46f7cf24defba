"""Turns a ChatRequest into model inputs (chat template, tokens, image tensors) in the callers' threads.

This runs in the backend's request threads, before a request reaches the generation thread, so
image preprocessing never stalls the tokens of running requests. Requests that arrive together
are preprocessed together (a group commit): the thread that gets the processor takes every
request waiting for it and runs their images through the processor in one call. Eight image
requests arriving at once were prepared one after another under the tokenizer's lock (42 ms
median, the last one ~60 ms, on an H200 host); processed as one batch they all come out in
about the time of one, and reach the engine together, in time for one shared prefill.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Callable
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


class _Pending:
    """A request waiting for the processor, and what came of it."""

    __slots__ = ("error", "prompt", "request")

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.prompt: PreparedPrompt | None = None
        self.error: BaseException | None = None


class PromptPreparer:
    """Applies the chat template and the processor; thread-safe, and batching (see the module docstring).

    Args:
        loaded: the model, its tokenizer and processor.
        images_on_device: preprocess images on the model's GPU where a torchvision processor exists.
        max_batch: at most this many requests share one processor call.
    """

    def __init__(self, loaded: LoadedModel, *, images_on_device: bool = True, max_batch: int = 32) -> None:
        self.loaded = loaded
        self.max_batch = max_batch
        self._lock = threading.Lock()  # a fast tokenizer refuses concurrent calls ("Already borrowed")
        self._queue_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._image_kwargs: dict[str, Any] = {}
        self._stream: Any = None
        if images_on_device and loaded.accepts_images and loaded.device.startswith("cuda"):
            self._image_kwargs = _images_on_gpu(loaded)
            if self._image_kwargs:
                self._stream = torch.cuda.Stream(device=loaded.device)  # created once, used under the lock
        #: processor calls made and the requests they prepared (batching shows as requests > calls)
        self.calls = 0
        self.prepared = 0

    def prepare(self, request: ChatRequest) -> PreparedPrompt:
        started = time.perf_counter()
        mine = _Pending(request)
        with self._queue_lock:
            self._pending.append(mine)
        while mine.prompt is None and mine.error is None:
            with self._lock:  # whoever holds it prepares the oldest waiting requests, its own or others'
                if mine.prompt is None and mine.error is None:
                    with self._queue_lock:
                        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                    try:
                        self._run(batch)
                    except BaseException as exc:  # no request taken may wait forever: each gets the error
                        for item in batch:
                            if item.prompt is None and item.error is None:
                                item.error = exc
                        raise
        if mine.error is not None:
            raise mine.error
        assert mine.prompt is not None
        mine.prompt.preprocess_ms = (time.perf_counter() - started) * 1000
        return mine.prompt

    def _run(self, batch: list[_Pending]) -> None:
        """Prepare ``batch`` (holding the lock): image requests of equal image sizes in one call each."""
        groups: dict[tuple[Any, ...], list[_Pending]] = {}
        for item in batch:
            groups.setdefault(_group_key(item.request), []).append(item)
        for key, items in groups.items():
            try:
                if key and len(items) > 1:
                    for item, prompt in zip(items, self._prepare_images([i.request for i in items]), strict=True):
                        item.prompt = prompt
                    self.calls += 1
                    self.prepared += len(items)
                    continue
            except Exception:
                logger.warning("batched preprocessing of %d requests failed; one by one", len(items), exc_info=True)
            for item in items:
                try:
                    item.prompt = self._prepare_one(item.request)
                except Exception as exc:  # noqa: BLE001 - the request's own error, raised in its thread
                    item.error = exc
                self.calls += 1
                self.prepared += 1

    def _prepare_one(self, request: ChatRequest) -> PreparedPrompt:
        if request.images and self._image_kwargs:
            encoded = self._on_side_stream(lambda: self._encode_images([request]))
        elif self.loaded.accepts_images:
            encoded = self._encode_images([request], with_device=False)
        else:
            encoded = self.loaded.tokenizer.apply_chat_template(
                text_only(request.messages),
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
                **template_kwargs(request),
            )
        return PreparedPrompt(encoded["input_ids"], _extras(encoded))

    def _prepare_images(self, requests: list[ChatRequest]) -> list[PreparedPrompt]:
        """One processor call for several image requests, split back into one prompt each."""
        if self._image_kwargs:
            encoded = self._on_side_stream(lambda: self._encode_images(requests))
        else:
            encoded = self._encode_images(requests, with_device=False)
        n = len(requests)
        ids, mask = encoded["input_ids"], encoded.get("attention_mask")
        extras = _extras(encoded)
        if ids.shape[0] != n or any(v.shape[0] != n for v in extras.values()):
            raise ValueError(f"the processor's outputs are not one row per request: {_shapes(encoded)}")
        prompts = []
        for i in range(n):
            row = ids[i] if mask is None else ids[i][mask[i].bool()]
            prompts.append(PreparedPrompt(row[None].clone(), {k: v[i : i + 1] for k, v in extras.items()}))
        return prompts

    def _on_side_stream(self, encode: Callable[[], Any]) -> Any:
        """GPU preprocessing on a stream of its own: it need not queue behind the engine's decode steps."""
        with torch.cuda.stream(self._stream):
            encoded = encode()
        self._stream.synchronize()
        engine_stream = torch.cuda.default_stream(self.loaded.device)
        for value in encoded.values():
            if isinstance(value, torch.Tensor) and value.is_cuda:
                value.record_stream(engine_stream)  # the allocator must not reuse it while the engine reads it
        return encoded

    def _encode_images(self, requests: list[ChatRequest], *, with_device: bool = True) -> Any:
        processor = self.loaded.processor
        texts = [
            processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False, **template_kwargs(r))
            for r in requests
        ]
        images = [r.images for r in requests] if any(r.images for r in requests) else None
        kwargs = self._image_kwargs if with_device else {}
        if len(requests) == 1:
            images = requests[0].images or None
            return processor(text=texts, images=images, return_tensors="pt", **kwargs)
        return processor(text=texts, images=images, return_tensors="pt", padding=True, **kwargs)


def _group_key(request: ChatRequest) -> tuple[Any, ...]:
    """Requests with equal non-empty keys are preprocessed in one call; text-only ones get ``()``."""
    if not request.images:
        return ()
    return tuple((image.size, image.mode) for image in request.images)


def _extras(encoded: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask") and hasattr(v, "shape")}


def _shapes(encoded: Any) -> dict[str, Any]:
    return {k: tuple(v.shape) for k, v in encoded.items() if hasattr(v, "shape")}


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
