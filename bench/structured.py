"""The cost of grammar-constrained decoding: decode tokens/s with and without it, in one run.

Loads the VLM backend's default model (SmolLM2-135M-Instruct, real weights) or ``--model-path``
in-process with the backend's own ``ChatGenerator`` and runs, interleaved ``--repeats`` times:

* ``free``: plain text, exactly ``--max-tokens`` tokens (``ignore_eos``);
* ``json_schema``: the answer constrained to a JSON Schema (llguidance), as long as it runs;
* ``tool_call``: ``tool_choice: required``, constrained to one call of one of two tools;

each alone (batch 1) and as ``--batch`` concurrent requests (the constrained batch mixes schema
rows with free rows, as a server sees). Tokens/s is completion tokens (all rows) over the time
from submitting to the last row's end, so grammar compile, masks and prefill all count; the
ratio constrained/free and the time to the first piece of each answer are printed (a forced
tool call's first piece is its name, which needs the ``<tool_call>{"name":...`` tokens first). Run from the repository root with the VLM venv::

    model_backends/vlm_backend/.venv/bin/python -m bench.structured            # CPU
    model_backends/vlm_backend/.venv/bin/python -m bench.structured --device cuda

``--random-weights`` builds the model from the folder's config and tokenizer only (for a machine
the 517 MB weights cannot travel to); the grammar's cost per token does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from model_backends.base.context import RequestContext
from model_backends.vlm_backend.vlm_engine.chat_request import parse_chat_request
from model_backends.vlm_backend.vlm_engine.continuous_engine import ContinuousEngine, EngineConfig
from model_backends.vlm_backend.vlm_engine.generation import ChatGenerator
from model_backends.vlm_backend.vlm_engine.model_loader import LoadedModel, load_model
from model_backends.vlm_backend.vlm_engine.prompt_prep import PromptPreparer
from model_backends.vlm_backend.vlm_engine.request_controls import AnswerShaper, RequestPreparer

logger = logging.getLogger("bench.structured")

SCHEMA = {
    "type": "object",
    "properties": {
        "cities": {
            "type": "array",
            "minItems": 8,
            "maxItems": 12,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 24},
                    "country": {"type": "string", "maxLength": 24},
                    "population_millions": {"type": "integer", "minimum": 0, "maximum": 40},
                },
                "required": ["name", "country", "population_millions"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["cities"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "book_trip",
            "parameters": {
                "type": "object",
                "properties": {
                    "cities": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 24},
                        "minItems": 6,
                        "maxItems": 10,
                    },
                    "notes": {"type": "string", "maxLength": 120},
                },
                "required": ["cities", "notes"],
                "additionalProperties": False,
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
QUESTION = "List large European cities with their countries and populations."


def request(mode: str, max_tokens: int) -> dict[str, Any]:
    data: dict[str, Any] = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": max_tokens}
    if mode == "free":
        data["ignore_eos"] = True
    elif mode == "json_schema":
        data["response_format"] = {"type": "json_schema", "json_schema": {"name": "cities", "schema": SCHEMA}}
    elif mode == "tool_call":
        data.update(tools=TOOLS, tool_choice="required")
    return data


class StaticEngine:
    """The backend's default engine (continuous batching on a static cache), driven as ``main.py`` does."""

    def __init__(self, loaded: LoadedModel, max_batch: int) -> None:
        config = EngineConfig(max_batch=max_batch, max_len=2048, graphs=loaded.device.startswith("cuda"))
        self.engine = ContinuousEngine(loaded, config)
        self.engine.load()
        self.prompts = PromptPreparer(loaded)
        self.preparer = RequestPreparer(loaded, window=config.max_len - 1)

    def generate(self, request: Any, ctx: RequestContext | None) -> dict[str, Any]:
        self.preparer.prepare(request)
        handle = self.engine.submit(request, self.prompts.prepare(request), lambda: False)
        shaper = AnswerShaper(request, ctx.emit_partial if ctx is not None else None)
        for chunk in handle.stream(600.0):
            if ctx is not None:
                shaper.on_chunk(chunk)
        result = handle.result()
        shaper.on_end()
        return {**result, **shaper.final(result["text"], result["finish_reason"])}

    def close(self) -> None:
        self.engine.unload()


Engine = ChatGenerator | StaticEngine


def one(gen: Engine, mode: str, max_tokens: int) -> tuple[float, int, float]:
    """(seconds from submit to the end, completion tokens, seconds to the first piece of the answer)."""
    first: list[float] = []
    ctx = RequestContext(request_id="bench", stream=True, _emit=lambda _: first.append(time.perf_counter()))
    req = parse_chat_request(request(mode, max_tokens))
    started = time.perf_counter()
    answer = gen.generate(req, ctx)
    ended = time.perf_counter()
    return ended - started, int(answer["usage"]["completion_tokens"]), (first[0] if first else ended) - started


def rate(gen: Engine, modes: list[str], max_tokens: int) -> tuple[float, float]:
    """(tokens/s of the whole batch ``modes``, started together, end to end; mean time to a first piece)."""
    barrier = threading.Barrier(len(modes))

    def run(mode: str) -> tuple[float, int, float]:
        barrier.wait()
        return one(gen, mode, max_tokens)

    with ThreadPoolExecutor(len(modes)) as pool:
        results = list(pool.map(run, modes))
    return sum(r[1] for r in results) / max(r[0] for r in results), statistics.mean(r[2] for r in results)


def random_copy(folder: str, dest: str) -> str:
    """A folder with ``folder``'s config and tokenizer and random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(dest)
    AutoTokenizer.from_pretrained(folder).save_pretrained(dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", default=None, help="a model folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", choices=["static", "generate"], default="static", help="the backend's --engine")
    parser.add_argument("--random-weights", action="store_true", help="the model folder's shape, random weights")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model_path = args.model_path
    if args.random_weights:
        model_path = random_copy(model_path, tempfile.mkdtemp(prefix="structured-bench-"))
    loaded = load_model(model_path, args.device)
    started = time.perf_counter()
    gen: Engine = (
        ChatGenerator(loaded, max_batch_size=args.batch)
        if args.engine == "generate"
        else StaticEngine(loaded, args.batch)
    )
    print(
        f"model {loaded.name} on {args.device}, engine {args.engine} (ready in {time.perf_counter() - started:.1f} s)"
    )
    one(gen, "json_schema", 8)  # warm-up: allocator, first grammar
    cases = {
        "free, batch 1": ["free"],
        "json_schema, batch 1": ["json_schema"],
        "tool_call, batch 1": ["tool_call"],
        f"free, batch {args.batch}": ["free"] * args.batch,
        f"json_schema, batch {args.batch} (half free rows)": ["json_schema", "free"] * (args.batch // 2),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    firsts: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, modes in cases.items():
            tok_s, first = rate(gen, modes, args.max_tokens)
            rates[name].append(tok_s)
            firsts[name].append(first)
    check = gen.generate(parse_chat_request(request("json_schema", 400)), None)
    if check["finish_reason"] == "stop":
        cities = json.loads(check["text"])["cities"]
        print(f"check: a {len(check['text'])}-character answer parsed, {len(cities)} cities of the schema")
    else:
        print(f"check: the answer was cut at max_tokens ({check['finish_reason']})")
    gen.close()
    print(f"{'case':<40} {'tok/s (median)':>22} {'first piece s':>14} {'vs free':>8}")
    for name in cases:
        base = f"free, batch {args.batch}" if "batch 1" not in name else "free, batch 1"
        ratio = statistics.median(rates[name]) / statistics.median(rates[base])
        print(
            f"{name:<40} {statistics.median(rates[name]):>22.1f} {statistics.median(firsts[name]):>14.3f} {ratio:>8.2f}"
        )


if __name__ == "__main__":
    main()
