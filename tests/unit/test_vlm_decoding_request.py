"""The VLM backend's decoding fields: response_format, tools, tool_choice, logprobs, penalties, logit_bias."""

from __future__ import annotations

import re
from typing import Any

import pytest

from model_backends.base.errors import BadRequestError
from model_backends.vlm_backend.vlm_engine.chat_request import parse_chat_request
from model_backends.vlm_backend.vlm_engine.decoding_request import parse_decoding_request

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def chat(**fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], **fields}


def test_a_json_schema_response_format_is_read_with_its_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = parse_decoding_request(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}}
    ).output
    assert (out.kind, out.schema, out.name, out.strict) == ("json_schema", schema, "x", True)


def test_tool_choice_defaults_to_auto_with_tools_and_none_without() -> None:
    assert parse_decoding_request({"tools": [TOOL]}).tool_choice.mode == "auto"
    assert parse_decoding_request({}).tool_choice.mode == "none"
    named = parse_decoding_request({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}}})
    assert (named.tool_choice.mode, named.tool_choice.name, named.forced_tool) == ("function", "f", True)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": [TOOL, TOOL]}, "tools"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": "high"}, "frequency_penalty"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias[5]"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"tools": [TOOL], "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ],
)
def test_bad_decoding_fields_are_bad_requests_naming_them(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(BadRequestError, match=re.escape(f"data.{named}")):
        parse_decoding_request(fields)


def test_unknown_data_fields_are_refused_by_name() -> None:
    with pytest.raises(BadRequestError, match=r"data\.best_of"):
        parse_chat_request(chat(best_of=2))
    with pytest.raises(BadRequestError, match=r"data\.n must be 1"):
        parse_chat_request(chat(n=2))


def test_developer_tool_and_tool_call_messages_are_read() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    req = parse_chat_request(
        {
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "2"},
            ]
        }
    )
    assert [m["role"] for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[2]["tool_calls"][0]["function"] == {"name": "f", "arguments": {"a": 1}}
    assert req.messages[3]["tool_call_id"] == "c1"
    with pytest.raises(BadRequestError, match="tool_call_id"):
        parse_chat_request({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "2"}]})
