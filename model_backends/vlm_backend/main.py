"""The VLM backend: OpenAI-shaped chat (text and images) with any local Hugging Face model folder."""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_engine.chat_request import parse_chat_request
from vlm_engine.model_loader import DEFAULT_MODEL_NAME

from model_backends.base import BaseModelBackend, build_parser, current_request, run_backend

if TYPE_CHECKING:  # torch and transformers are imported at load, so the process answers pings at once
    from vlm_engine.continuous_engine import ContinuousEngine
    from vlm_engine.generation import ChatGenerator
    from vlm_engine.model_loader import LoadedModel
    from vlm_engine.prompt_prep import PromptPreparer
    from vlm_engine.request_controls import RequestPreparer

logger = logging.getLogger(__name__)

TRUST_REMOTE_CODE_ENV = "VLM_TRUST_REMOTE_CODE"
MAX_BATCH_ENV = "VLM_MAX_BATCH"
ENGINES = ("static", "generate")
#: the longest a streaming request may go without a token before it fails
STALL_TIMEOUT_S = 600.0


class VLMBackend(BaseModelBackend):
    """Chat completions from a local model folder (AutoModelForImageTextToText, or a causal LM)."""

    name = "vlm"
    version = "0.1.0"

    def __init__(
        self,
        *args: Any,
        trust_remote_code: bool = False,
        max_batch: int | None = None,
        max_context: int | None = None,
        engine: str = "static",
        graphs: bool = True,
        fused: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.trust_remote_code = trust_remote_code
        self.max_batch = max_batch
        self.max_context = max_context
        self.engine_name = engine
        self.graphs = graphs
        self.fused = fused
        self._loaded: LoadedModel | None = None
        self._engine: ContinuousEngine | None = None
        self._preparer: PromptPreparer | None = None
        self._requests: RequestPreparer | None = None
        self._generator: ChatGenerator | None = None

    def initialize_model(self) -> None:
        from vlm_engine.model_loader import load_model

        self._loaded = load_model(self.model_path, self.device, trust_remote_code=self.trust_remote_code)
        on_gpu = self._loaded.device.startswith("cuda")
        batch = self.max_batch or (32 if on_gpu else 4)
        if self.engine_name == "generate":
            from vlm_engine.generation import ChatGenerator

            self._generator = ChatGenerator(self._loaded, max_batch_size=batch)
            return
        from vlm_engine.continuous_engine import ContinuousEngine, EngineConfig
        from vlm_engine.prompt_prep import PromptPreparer

        config = EngineConfig(
            max_batch=batch,
            max_len=self.max_context or (4096 if on_gpu else 2048),
            graphs=self.graphs,
            fused=self.fused,
        )
        self._engine = ContinuousEngine(self._loaded, config)
        self._engine.load(progress=lambda note: logger.info("vlm: %s", note))
        self._preparer = PromptPreparer(self._loaded)
        from vlm_engine.request_controls import RequestPreparer

        # tools in the prompt, grammars and the other RowControls, and the context check
        self._requests = RequestPreparer(self._loaded, window=config.max_len - 1)

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        ctx = current_request()
        generator = self._generator
        if generator is not None:
            with generator.arriving():
                old_style = parse_chat_request(data)
            return generator.generate(old_style, ctx)
        engine, preparer, loaded, requests = self._engine, self._preparer, self._loaded, self._requests
        if engine is None or preparer is None or loaded is None or requests is None:
            raise RuntimeError("the model is not loaded")
        with engine.arriving():
            started = time.perf_counter()
            request = parse_chat_request(data)
            parse_ms = (time.perf_counter() - started) * 1000
            if request.images and not loaded.accepts_images:
                from model_backends.base.errors import BadRequestError

                raise BadRequestError(f"model {loaded.name!r} is text-only; it does not accept images")
            requests.prepare(request)
            prompt = preparer.prepare(request)
            handle = engine.submit(request, prompt, (lambda: ctx.cancelled) if ctx is not None else (lambda: False))
        streaming = ctx is not None and (request.stream or ctx.stream)
        from vlm_engine.request_controls import AnswerShaper

        shaper = AnswerShaper(request, ctx.emit_partial if streaming and ctx is not None else None)
        try:
            for chunk in handle.stream(STALL_TIMEOUT_S):
                if streaming:
                    shaper.on_chunk(chunk)  # content or tool-call deltas, with the chunk's logprobs
        except BaseException:
            engine.cancel(handle)
            raise
        result = handle.result()
        shaper.on_end()
        result.update(shaper.final(result["text"], result["finish_reason"]))
        result["stages_ms"] = {
            "parse": round(parse_ms, 3),
            "preprocess": round(prompt.preprocess_ms, 3),
            **result["stages_ms"],
        }
        return result

    def cleanup(self) -> None:
        loaded, generator, engine = self._loaded, self._generator, self._engine
        self._loaded, self._generator, self._engine, self._preparer = None, None, None, None
        if engine is not None:
            engine.unload()
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


def _on_gpu_machine() -> bool:
    return Path("/dev/nvidiactl").exists()


def _default_concurrency(max_batch: int | None) -> int:
    """Requests taken at once: each waits in a pool thread while the engine generates it with the others."""
    return (max_batch or (32 if _on_gpu_machine() else 4)) + 2


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
        default=int(os.environ.get(MAX_BATCH_ENV) or 0) or None,
        help="rows of the running batch (default 32 with a GPU, 4 without)",
    )
    parser.add_argument(
        "--max-context",
        type=int,
        default=None,
        help="positions per row of the static KV cache: prompt + answer (default 4096 with a GPU, 2048 without)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="static",
        help="static: continuous batching on a static KV cache (default); generate: batched model.generate",
    )
    parser.add_argument("--no-graphs", action="store_true", help="no CUDA graphs for the decode step")
    parser.add_argument(
        "--no-fused", action="store_true", help="no fused (compiled) kernels for RMSNorm, MLP and rotary on a GPU"
    )
    parser.set_defaults(max_concurrency=None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # what torch.compile builds (the fused kernels) survives a restart here, not in /tmp
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parent / ".compile-cache"))
    run_backend(
        VLMBackend,
        argv,
        parser=parser,
        extra_kwargs=lambda args: {
            "max_concurrency": args.max_concurrency or _default_concurrency(args.max_batch),
            "trust_remote_code": args.trust_remote_code,
            "max_batch": args.max_batch,
            "max_context": args.max_context,
            "engine": args.engine,
            "graphs": not args.no_graphs,
            "fused": not args.no_fused,
        },
    )


if __name__ == "__main__":
    main()
