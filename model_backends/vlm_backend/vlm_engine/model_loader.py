"""Finds and loads a model folder: processor + image-text-to-text model, or a causal LM as fallback."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gguf_cache import ensure_default_model

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


class ModelNotFoundError(FileNotFoundError):
    """The configured model is neither a local folder nor in the local Hugging Face cache."""


@dataclass
class LoadedModel:
    """What generation needs: the model, its processor (or tokenizer), and where it runs."""

    name: str
    model: Any
    processor: Any
    tokenizer: Any
    device: str
    accepts_images: bool
    folder: Path | None = None


def resolve_model_folder(model_path: str | None) -> Path:
    """A local folder for ``model_path``; None means the default SmolLM2 (converted once)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not model_path:
        return ensure_default_model()
    path = Path(model_path).expanduser()
    if path.is_dir():
        return path
    repo_id, _, revision = model_path.partition("@")  # "owner/name@revision", as `download --revision` fetched it
    if path.is_absolute() or model_path.startswith((".", "~")) or repo_id.count("/") != 1:
        raise ModelNotFoundError(f"model folder {model_path!r} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision or None, local_files_only=True))
    except LocalEntryNotFoundError as exc:
        raise ModelNotFoundError(
            f"model {model_path!r} is not in the local Hugging Face cache and downloads are off "
            f"(HF_HUB_OFFLINE=1); fetch it with `python -m main_backend download {repo_id}` or pass a local folder"
        ) from exc


def pick_device(requested: str | None) -> tuple[str, Any]:
    """(device, dtype): CUDA in bf16 when there is a GPU, else CPU in float32."""
    import torch

    device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU")
    return device, torch.bfloat16 if device.startswith("cuda") else torch.float32


def load_model(model_path: str | None, device: str | None, *, trust_remote_code: bool = False) -> LoadedModel:
    """Load the folder with ``AutoProcessor`` + ``AutoModelForImageTextToText``, else a causal LM."""
    from transformers import AutoConfig

    folder = resolve_model_folder(model_path)
    dev, dtype = pick_device(device)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    model, processor, accepts_images = _load_vision(folder, config, kwargs) or _load_text(folder, kwargs)
    model.to(dev).eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    name = model_path or DEFAULT_MODEL_NAME
    logger.info("loaded %s (%s, images %s) on %s as %s", name, type(model).__name__, accepts_images, dev, dtype)
    return LoadedModel(name, model, processor, tokenizer, dev, accepts_images, folder)


def _load_vision(folder: Path, config: Any, kwargs: dict[str, Any]) -> tuple[Any, Any, bool] | None:
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    remote = kwargs["trust_remote_code"] and "AutoModelForImageTextToText" in (getattr(config, "auto_map", None) or {})
    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and not remote:
        return None
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=kwargs["trust_remote_code"])
    model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
    return model, processor, hasattr(processor, "image_processor")


def _load_text(folder: Path, kwargs: dict[str, Any]) -> tuple[Any, Any, bool]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=kwargs["trust_remote_code"])
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    return model, tokenizer, False
