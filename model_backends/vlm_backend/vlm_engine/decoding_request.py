"""Validates what a chat request asks of the decoder: output format, tools, logprobs, penalties, logit_bias.

Pure (no torch, no tokenizer): turns the OpenAI-shaped fields of ``data`` into a
``DecodingRequest``; a bad value is a ``BadRequestError`` naming the field. What these options do
to decoding is built later, with the loaded model (``request_controls.prepare``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from model_backends.base.errors import BadRequestError

MAX_TOP_LOGPROBS = 20
MAX_TOOLS = 128
MAX_LOGIT_BIAS = 300
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True)
class OutputFormat:
    """``response_format``: plain text, any JSON object, or JSON matching ``schema``."""

    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class ToolFunction:
    """One entry of ``tools`` (``type: function``)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool = False

    def openai_shape(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    """``tool_choice``: ``none`` / ``auto`` / ``required``, or ``function`` with the function's name."""

    mode: Literal["none", "auto", "required", "function"] = "auto"
    name: str | None = None


@dataclass
class DecodingRequest:
    """Everything beyond temperature/top_p/stop/max_tokens that a request asks of the decoder."""

    output: OutputFormat = field(default_factory=OutputFormat)
    tools: list[ToolFunction] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)

    @property
    def tools_active(self) -> bool:
        """Tools are offered to the model (listed in the prompt, its calls parsed)."""
        return bool(self.tools) and self.tool_choice.mode != "none"

    @property
    def forced_tool(self) -> bool:
        """The answer must be a tool call (``required`` or a named function): grammar-constrained."""
        return self.tools_active and self.tool_choice.mode in ("required", "function")


def parse_decoding_request(data: dict[str, Any]) -> DecodingRequest:
    """The decoding options of ``data``; raises BadRequestError naming the bad field."""
    tools = _tools(data.get("tools"))
    choice = _tool_choice(data.get("tool_choice"), tools)
    output = _output_format(data.get("response_format"))
    if output.kind != "text" and choice.mode in ("required", "function") and tools:
        raise BadRequestError("data.response_format: cannot be combined with a tool_choice that forces a tool call")
    logprobs = _bool(data, "logprobs")
    top = data.get("top_logprobs")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise BadRequestError(f"data.top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {top!r}")
        if not logprobs:
            raise BadRequestError("data.top_logprobs needs data.logprobs: true")
    return DecodingRequest(
        output=output,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=_bool(data, "parallel_tool_calls", default=True),
        logprobs=logprobs,
        top_logprobs=top or 0,
        presence_penalty=_penalty(data, "presence_penalty"),
        frequency_penalty=_penalty(data, "frequency_penalty"),
        logit_bias=_logit_bias(data.get("logit_bias")),
    )


def _bool(data: dict[str, Any], key: str, *, default: bool = False) -> bool:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequestError(f"data.{key} must be true or false, got {value!r}")
    return value


def _penalty(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not -2.0 <= value <= 2.0:
        raise BadRequestError(f"data.{key} must be a number in [-2, 2], got {value!r}")
    return float(value)


def _logit_bias(value: Any) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_LOGIT_BIAS:
        raise BadRequestError(f"data.logit_bias must be an object of at most {MAX_LOGIT_BIAS} token ids -> bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise BadRequestError(f"data.logit_bias: key {key!r} is not a token id") from None
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise BadRequestError(f"data.logit_bias[{key}] must be a number in [-100, 100], got {bias!r}")
        out[token] = float(bias)
    return out


def _output_format(value: Any) -> OutputFormat:
    if value is None:
        return OutputFormat()
    if not isinstance(value, dict):
        raise BadRequestError("data.response_format must be an object with a type")
    kind = value.get("type")
    if kind in ("text", "json_object"):
        return OutputFormat(kind=kind)
    if kind != "json_schema":
        raise BadRequestError(f"data.response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise BadRequestError("data.response_format.json_schema must be an object with name and schema")
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise BadRequestError("data.response_format.json_schema.schema must be a JSON Schema object")
    name = spec.get("name")
    if not isinstance(name, str) or not FUNCTION_NAME.match(name):
        raise BadRequestError("data.response_format.json_schema.name must be a name of 1-64 letters, digits, _ or -")
    return OutputFormat(kind="json_schema", schema=schema, name=name, strict=spec.get("strict") is True)


def _tools(value: Any) -> list[ToolFunction]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise BadRequestError(f"data.tools must be a list of at most {MAX_TOOLS} tools")
    tools = [_tool(i, t) for i, t in enumerate(value)]
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise BadRequestError("data.tools: function names must be unique")
    return tools


def _tool(index: int, raw: Any) -> ToolFunction:
    where = f"data.tools[{index}]"
    if not isinstance(raw, dict) or raw.get("type") != "function" or not isinstance(raw.get("function"), dict):
        raise BadRequestError(f"{where} must be {{'type': 'function', 'function': {{name, parameters}}}}")
    function = raw["function"]
    name = function.get("name")
    if not isinstance(name, str) or not FUNCTION_NAME.match(name):
        raise BadRequestError(f"{where}.function.name must be 1-64 letters, digits, _, . or -")
    description = function.get("description") or ""
    if not isinstance(description, str):
        raise BadRequestError(f"{where}.function.description must be a string")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict):
        raise BadRequestError(f"{where}.function.parameters must be a JSON Schema object")
    return ToolFunction(name, description, parameters, function.get("strict") is True)


def _tool_choice(value: Any, tools: list[ToolFunction]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto" if tools else "none")
    if value in ("none", "auto", "required"):
        if value == "required" and not tools:
            raise BadRequestError("data.tool_choice 'required' needs data.tools")
        return ToolChoice(value)
    function = value.get("function") if isinstance(value, dict) and value.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise BadRequestError(
            "data.tool_choice must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}"
        )
    if name not in {t.name for t in tools}:
        raise BadRequestError(f"data.tool_choice names function {name!r}, which is not in data.tools")
    return ToolChoice("function", name)
