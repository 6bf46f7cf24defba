"""Turns a request's OpenAI-shaped ``data`` into a validated ChatRequest (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model_backends.base.errors import BadRequestError

from .image_parts import decode_image_part
from .row_controls import RowControls

ROLES = frozenset({"system", "user", "assistant"})
DEFAULT_MAX_TOKENS = 256
MAX_TOKENS_LIMIT = 8192
MAX_STOP_SEQUENCES = 8
MAX_IMAGES = 8


@dataclass
class ChatRequest:
    """One chat completion: messages in Hugging Face chat format, their images, and sampling."""

    messages: list[dict[str, Any]]
    images: list[Any] = field(default_factory=list)
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    stream: bool = False
    #: generate exactly max_tokens (vLLM's benchmarking extension); EOS is suppressed until then
    ignore_eos: bool = False
    #: per-row decoding controls (grammar, bias, penalties, logprobs); every engine honours them
    controls: RowControls = field(default_factory=RowControls)


def parse_chat_request(data: dict[str, Any]) -> ChatRequest:
    """Validate ``data`` and decode its images; raises BadRequestError naming the bad field."""
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise BadRequestError("data.messages must be a non-empty list of {role, content} messages")
    images: list[Any] = []
    messages = [_message(i, m, images) for i, m in enumerate(raw_messages)]
    if "image" in data:
        _attach_extra_image(messages, data["image"], images)
    if len(images) > MAX_IMAGES:
        raise BadRequestError(f"at most {MAX_IMAGES} images per request, got {len(images)}")
    if not any(m["role"] == "user" for m in messages):
        raise BadRequestError("data.messages needs at least one user message")
    return ChatRequest(
        messages=messages,
        images=images,
        max_tokens=_int_in(data, "max_tokens", DEFAULT_MAX_TOKENS, 1, MAX_TOKENS_LIMIT),
        temperature=_float_in(data, "temperature", 0.0, 0.0, 2.0),
        top_p=_float_in(data, "top_p", 1.0, 0.0, 1.0, low_open=True),
        stop=_stop_list(data.get("stop")),
        seed=_seed(data.get("seed")),
        stream=bool(data.get("stream", False)),
        ignore_eos=bool(data.get("ignore_eos", False)),
    )


def _message(index: int, raw: Any, images: list[Any]) -> dict[str, Any]:
    where = f"data.messages[{index}]"
    if not isinstance(raw, dict):
        raise BadRequestError(f"{where} must be an object with role and content")
    role = raw.get("role")
    if role not in ROLES:
        raise BadRequestError(f"{where}.role must be one of {sorted(ROLES)}, got {role!r}")
    content = raw.get("content")
    if isinstance(content, str):
        return {"role": role, "content": [{"type": "text", "text": content}]}
    if not isinstance(content, list) or not content:
        raise BadRequestError(f"{where}.content must be a string or a non-empty list of parts")
    parts = [_part(f"{where}.content[{j}]", p, images) for j, p in enumerate(content)]
    if role != "user" and any(p["type"] == "image" for p in parts):
        raise BadRequestError(f"{where}: only user messages may carry images")
    return {"role": role, "content": parts}


def _part(where: str, part: Any, images: list[Any]) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise BadRequestError(f"{where} must be an object with a type")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise BadRequestError(f"{where}.text must be a string")
        return {"type": "text", "text": text}
    if kind == "image_url":
        ref = part.get("image_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        images.append(decode_image_part(url, where))
        return {"type": "image"}
    if kind in ("image", "input_image"):
        images.append(decode_image_part(part.get("image") or part.get("image_url"), where))
        return {"type": "image"}
    raise BadRequestError(f"{where}.type must be 'text' or 'image_url', got {kind!r}")


def _attach_extra_image(messages: list[dict[str, Any]], value: Any, images: list[Any]) -> None:
    """``data.image`` (base64 or a binary frame's bytes) goes before the last user message's text."""
    last_user = next(m for m in reversed(messages) if m["role"] == "user")
    image = decode_image_part(value, "data.image")
    before = sum(p["type"] == "image" for m in messages[: messages.index(last_user)] for p in m["content"])
    images.insert(before, image)
    last_user["content"].insert(0, {"type": "image"})


def _int_in(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequestError(f"data.{key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _float_in(
    data: dict[str, Any], key: str, default: float, low: float, high: float, *, low_open: bool = False
) -> float:
    value = data.get(key)
    if value is None:
        return default
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (low < value <= high if low_open else low <= value <= high):
        bracket = "(" if low_open else "["
        raise BadRequestError(f"data.{key} must be a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def _stop_list(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise BadRequestError("data.stop must be a non-empty string or a list of them")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise BadRequestError(f"data.stop takes at most {MAX_STOP_SEQUENCES} sequences")
    return list(stops)


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError(f"data.seed must be an integer, got {value!r}")
    return value
