"""Tool calls in the VLM backend: the prompt format, and parsing ``<tool_call>`` blocks as they stream."""

from __future__ import annotations

import json
from typing import Any

from model_backends.vlm_backend.vlm_engine.decoding_request import parse_decoding_request
from model_backends.vlm_backend.vlm_engine.tool_calls import ToolCallStream, render_messages

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def feed_in_pieces(stream: ToolCallStream, text: str, size: int = 3) -> list[tuple[str, Any]]:
    events = []
    for i in range(0, len(text), size):
        events += stream.feed(text[i : i + size])
    return events + stream.finish()


def joined(events: list[tuple[str, Any]], kind: str) -> str:
    return "".join(v for k, v in events if k == kind)


def test_auto_mode_splits_content_from_a_complete_call() -> None:
    stream = ToolCallStream()
    text = 'Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    events = feed_in_pieces(stream, text)
    assert joined(events, "content") == "Let me check.\n"
    calls = [v for k, v in events if k == "tool_call"]
    assert len(calls) == 1
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert calls[0]["id"].startswith("call_")
    assert stream.tool_calls == [{"id": calls[0]["id"], "type": "function", "function": calls[0]["function"]}]


def test_text_that_only_starts_like_a_call_stays_content() -> None:
    stream = ToolCallStream()
    events = feed_in_pieces(stream, "a <tool is not <tool_call>not json</tool_call> b <tool_c", size=1)
    assert joined(events, "content") == "a <tool is not <tool_call>not json</tool_call> b <tool_c"
    assert stream.tool_calls == []


def test_forced_calls_stream_the_name_first_then_the_arguments_in_pieces() -> None:
    stream = ToolCallStream(stream_arguments=True)
    arguments = '{"city":"Paris","unit":"celsius"}'
    events = feed_in_pieces(stream, f'<tool_call>{{"name":"get_weather","arguments":{arguments}}}</tool_call>')
    deltas = [v for k, v in events if k == "tool_call"]
    assert deltas[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert len(deltas) > 3  # the arguments came in several pieces
    assert "".join(d["function"]["arguments"] for d in deltas) == arguments
    assert json.loads(stream.tool_calls[0]["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert joined(events, "content") == ""


def test_parallel_tool_calls_false_keeps_only_the_first_call() -> None:
    stream = ToolCallStream(parallel=False)
    call = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    feed_in_pieces(stream, call + "\n" + call.replace('"f"', '"g"'))
    assert [c["function"]["name"] for c in stream.tool_calls] == ["f"]


def test_templates_without_tool_support_get_the_documented_format() -> None:
    decoding = parse_decoding_request({"tools": [WEATHER]})
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": [], "tool_calls": [call]},
        {"role": "tool", "content": [{"type": "text", "text": "sunny"}], "tool_call_id": "c1"},
    ]
    rendered, template_tools = render_messages(messages, decoding, template_has_tools=False)
    assert template_tools is None
    assert rendered[0]["role"] == "system"
    assert '"name": "get_weather"' in rendered[0]["content"][0]["text"]
    assert "<tool_call>" in rendered[0]["content"][0]["text"]
    assert (
        rendered[2]["content"][-1]["text"]
        == '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>'
    )
    assert rendered[3] == {
        "role": "user",
        "content": [{"type": "text", "text": "<tool_response>\nsunny\n</tool_response>"}],
    }


def test_templates_with_tool_support_get_tools_and_tool_turns_as_they_are() -> None:
    decoding = parse_decoding_request({"tools": [WEATHER], "tool_choice": "auto"})
    messages = [{"role": "user", "content": [{"type": "text", "text": "weather?"}]}]
    rendered, template_tools = render_messages(messages, decoding, template_has_tools=True)
    assert rendered == messages
    assert template_tools == [WEATHER]


def test_tool_choice_none_leaves_the_tools_out_of_the_prompt() -> None:
    decoding = parse_decoding_request({"tools": [WEATHER], "tool_choice": "none"})
    rendered, _ = render_messages([{"role": "user", "content": []}], decoding, template_has_tools=False)
    assert [m["role"] for m in rendered] == ["user"]
