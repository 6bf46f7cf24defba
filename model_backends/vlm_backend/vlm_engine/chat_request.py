"""Turns a request's OpenAI-shaped ``data`` into a validated ChatRequest (no torch here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from model_backends.base.errors import BadRequestError

from .decoding_request import DecodingRequest, parse_decoding_request
from .image_parts import decode_image_part
from .row_controls import RowControls

#: ``developer`` (what current OpenAI SDKs send instead of ``system``) is read as ``system``.
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
#: Every key ``data`` may carry; any other key is refused by name, never ignored.
KNOWN_FIELDS = frozenset(
    {
        "messages", "image", "max_tokens", "temperature", "top_p", "stop", "seed", "stream", "ignore_eos", "n",
        "response_format", "tools", "tool_choice", "parallel_tool_calls", "logprobs", "top_logprobs",
        "presence_penalty", "frequency_penalty", "logit_bias",
    }
)  # fmt: skip
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
    #: max_tokens came from the request (else the default, shortened to fit the context)
    max_tokens_explicit: bool = False
    #: output format, tools, logprobs, penalties and logit_bias as asked (validated, model-independent)
    decoding: DecodingRequest = field(default_factory=DecodingRequest)
    #: what the decoder does per step for this row (built with the loaded model, see request_controls)
    controls: RowControls = field(default_factory=RowControls)
    #: ``tools=`` for a chat template that supports tools (else tools are rendered into the messages)
    template_tools: list[dict[str, Any]] | None = None


def parse_chat_request(data: dict[str, Any]) -> ChatRequest:
    """Validate ``data`` and decode its images; raises BadRequestError naming the bad field."""
    unknown = sorted(str(k) for k in data if k not in KNOWN_FIELDS)
    if unknown:
        raise BadRequestError(f"data.{unknown[0]} is not supported by this backend (unknown field(s): {unknown})")
    if data.get("n") not in (None, 1):
        raise BadRequestError("data.n must be 1: this backend makes one choice per request (the gateway fans n out)")
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
        max_tokens_explicit=data.get("max_tokens") is not None,
        decoding=parse_decoding_request(data),
    )


def _message(index: int, raw: Any, images: list[Any]) -> dict[str, Any]:
    where = f"data.messages[{index}]"
    if not isinstance(raw, dict):
        raise BadRequestError(f"{where} must be an object with role and content")
    role = raw.get("role")
    if role not in ROLES:
        raise BadRequestError(f"{where}.role must be one of {sorted(ROLES)}, got {role!r}")
    role = "system" if role == "developer" else role
    content = raw.get("content")
    if content is None and isinstance(raw.get("refusal"), str):
        content = raw["refusal"]  # an earlier refusal, sent back by SDKs: what the assistant said
    name = raw.get("name")
    if isinstance(name, str) and name and isinstance(content, str) and role == "user":
        content = f"{name}: {content}"  # several participants: the model sees who speaks
    extra = _tool_fields(where, role, raw)
    if content is None and role == "assistant" and extra.get("tool_calls"):
        return {"role": role, "content": [], **extra}
    if isinstance(content, str):
        return {"role": role, "content": [{"type": "text", "text": content}], **extra}
    if not isinstance(content, list) or not content:
        raise BadRequestError(f"{where}.content must be a string or a non-empty list of parts")
    parts = [_part(f"{where}.content[{j}]", p, images) for j, p in enumerate(content)]
    if role != "user" and any(p["type"] == "image" for p in parts):
        raise BadRequestError(f"{where}: only user messages may carry images")
    return {"role": role, "content": parts, **extra}


def _tool_fields(where: str, role: str, raw: dict[str, Any]) -> dict[str, Any]:
    """``tool_calls`` of an assistant turn (arguments parsed to objects), ``tool_call_id`` of a tool result."""
    if role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequestError(f"{where}.tool_call_id must name the tool call this message answers")
        return {"tool_call_id": call_id}
    calls = raw.get("tool_calls")
    if role != "assistant" or calls is None:
        return {}
    if not isinstance(calls, list):
        raise BadRequestError(f"{where}.tool_calls must be a list")
    return {"tool_calls": [_tool_call(f"{where}.tool_calls[{i}]", c) for i, c in enumerate(calls)]}


def _tool_call(where: str, raw: Any) -> dict[str, Any]:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequestError(f"{where} must be {{'id', 'type': 'function', 'function': {{name, arguments}}}}")
    arguments = function.get("arguments", "{}")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError as exc:
        raise BadRequestError(f"{where}.function.arguments is not valid JSON: {exc}") from exc
    call_id = raw.get("id") if isinstance(raw.get("id"), str) else ""
    return {"id": call_id, "type": "function", "function": {"name": function["name"], "arguments": parsed}}


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
