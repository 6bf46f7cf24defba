"""The VLM backend: OpenAI-shaped chat (text and images) with any local Hugging Face model folder."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlm_engine.chat_request import parse_chat_request
from vlm_engine.generation import ChatGenerator
from vlm_engine.model_loader import DEFAULT_MODEL_NAME, LoadedModel, load_model

from model_backends.base import BaseModelBackend, build_parser, current_request, run_backend

logger = logging.getLogger(__name__)

TRUST_REMOTE_CODE_ENV = "VLM_TRUST_REMOTE_CODE"
MAX_BATCH_ENV = "VLM_MAX_BATCH"
DEFAULT_MAX_BATCH = 8


class VLMBackend(BaseModelBackend):
    """Chat completions from a local model folder (AutoModelForImageTextToText, or a causal LM)."""

    name = "vlm"
    version = "0.1.0"

    def __init__(
        self, *args: Any, trust_remote_code: bool = False, max_batch: int = DEFAULT_MAX_BATCH, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.trust_remote_code = trust_remote_code
        self.max_batch = max_batch
        self._loaded: LoadedModel | None = None
        self._generator: ChatGenerator | None = None

    def initialize_model(self) -> None:
        self._loaded = load_model(self.model_path, self.device, trust_remote_code=self.trust_remote_code)
        self._generator = ChatGenerator(self._loaded, max_batch_size=self.max_batch)

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        generator = self._generator
        if generator is None:
            raise RuntimeError("the model is not loaded")
        with generator.arriving():
            request = parse_chat_request(data)
        return generator.generate(request, current_request())

    def cleanup(self) -> None:
        loaded, generator, self._loaded, self._generator = self._loaded, self._generator, None, None
        if generator is not None:
            generator.close()
        if loaded is None:
            return
        device = loaded.device
        del loaded
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def model_name(self) -> str | None:
        return self._loaded.name if self._loaded is not None else self.model_path or DEFAULT_MODEL_NAME


def _default_concurrency() -> int:
    """Requests taken at once: they are parsed in parallel and generated together as one batch."""
    return 8 if Path("/dev/nvidiactl").exists() else 4


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser(VLMBackend.__doc__ or "VLM backend")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=os.environ.get(TRUST_REMOTE_CODE_ENV, "") == "1",
        help="allow model folders that ship their own Python code (off by default)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=int(os.environ.get(MAX_BATCH_ENV) or DEFAULT_MAX_BATCH),
        help="concurrent requests generated together in one batched call (1: one at a time)",
    )
    parser.set_defaults(max_concurrency=None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_backend(
        VLMBackend,
        argv,
        parser=parser,
        extra_kwargs=lambda args: {
            "max_concurrency": args.max_concurrency or _default_concurrency(),
            "trust_remote_code": args.trust_remote_code,
            "max_batch": args.max_batch,
        },
    )


if __name__ == "__main__":
    main()
