"""Tool calls in the prompt and in the answer: the ``<tool_call>`` format, rendering and streaming parsing.

A chat template that supports tools (it reads ``tools``) gets them as ``apply_chat_template(tools=...)``
and the conversation's ``tool_calls`` / ``tool`` messages as they are. A template without tool
support (SmolLM2's) gets the documented format below, the one Hermes, Qwen 2.5 and SmolLM3 use:
a system message lists the functions inside ``<tools>``; the model calls one with
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; earlier calls are rendered the same
way and their results as ``<tool_response>...</tool_response>`` user turns.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .decoding_request import DecodingRequest, ToolFunction

logger = logging.getLogger(__name__)

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
#: ``{"name": "f", "arguments": `` at the start of a call: the name is known, arguments follow.
_HEADER = re.compile(r'^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


def tool_system_prompt(tools: list[ToolFunction]) -> str:
    listed = "\n".join(json.dumps(t.openai_shape(), ensure_ascii=False) for t in tools)
    return (
        "You can call functions to answer. The functions, with their parameters as JSON Schema:\n"
        f"<tools>\n{listed}\n</tools>\n"
        "To call a function, answer with one line per call and nothing else:\n"
        f'{OPEN}{{"name": "<function name>", "arguments": {{<arguments as a JSON object>}}}}{CLOSE}'
    )


def render_messages(
    messages: list[dict[str, Any]], decoding: DecodingRequest, template_has_tools: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages for the chat template, ``tools=`` for a template that supports them)."""
    if template_has_tools:
        tools = [t.openai_shape() for t in decoding.tools] if decoding.tools_active else None
        return messages, tools
    out = [_plain(m) for m in messages]
    if decoding.tools_active:
        prompt = {"type": "text", "text": tool_system_prompt(decoding.tools)}
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": [*out[0]["content"], {"type": "text", "text": "\n\n"}, prompt]}
        else:
            out.insert(0, {"role": "system", "content": [prompt]})
    return out, None


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """A message in the documented text format: tool calls as ``<tool_call>`` lines, results as user turns."""
    if message["role"] == "tool":
        text = "".join(p.get("text", "") for p in message["content"])
        return {"role": "user", "content": [{"type": "text", "text": f"<tool_response>\n{text}\n</tool_response>"}]}
    calls = message.get("tool_calls")
    base = {"role": message["role"], "content": list(message["content"])}
    if calls:
        lines = [OPEN + json.dumps(c["function"], ensure_ascii=False) + CLOSE for c in calls]
        base["content"].append({"type": "text", "text": "\n".join(lines)})
    return base


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class _Call:
    index: int
    id: str
    name: str | None = None
    arguments: str = ""
    args_start: int = -1  # offset of the arguments inside the call's body, once the header is read


@dataclass
class ToolCallStream:
    """Splits streamed answer text into content and tool calls, emitting OpenAI-shaped deltas.

    ``feed`` takes each new piece of text and returns events ``("content", text)`` and
    ``("tool_call", delta)``; ``finish`` returns the rest. Text that may be the start of
    ``<tool_call>`` is held back until it is known not to be. With ``stream_arguments`` (a
    grammar guarantees the call's shape) a call's name goes out as soon as it is known and its
    arguments piece by piece; otherwise each call goes out whole once it is complete, and a
    block that is not a valid call stays content.
    """

    stream_arguments: bool = False
    parallel: bool = True
    calls: list[_Call] = field(default_factory=list)
    content: str = ""
    _text: str = ""
    _pos: int = 0
    _call: _Call | None = None
    _body_start: int = 0

    def feed(self, piece: str) -> list[tuple[str, Any]]:
        self._text += piece
        events: list[tuple[str, Any]] = []
        while self._step(events):
            pass
        return events

    def finish(self) -> list[tuple[str, Any]]:
        events: list[tuple[str, Any]] = []
        call = self._call
        if call is not None and call.args_start >= 0:
            body = self._text[self._body_start :]
            self._emit_arguments(call, body[call.args_start :], events)  # cut short: what came
        elif call is not None:
            self._content(OPEN + self._text[self._body_start :], events)
        else:
            self._content(self._text[self._pos :], events)
        self._pos = len(self._text)
        self._call = None
        return events

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in self.calls
            if c.name is not None
        ]

    # ------------------------------------------------------------------ parsing
    def _step(self, events: list[tuple[str, Any]]) -> bool:
        if self._call is None:
            at = self._text.find(OPEN, self._pos)
            if at < 0:
                safe = len(self._text) - _partial_suffix(self._text, OPEN)
                self._content(self._text[self._pos : max(safe, self._pos)], events)
                self._pos = max(safe, self._pos)
                return False
            self._content(self._text[self._pos : at], events)
            self._call = _Call(index=len(self.calls), id=new_call_id())
            self._body_start = self._pos = at + len(OPEN)
            return True
        end = self._text.find(CLOSE, self._body_start)
        body = self._text[self._body_start : end if end >= 0 else len(self._text)]
        if end < 0:
            if self.stream_arguments:
                self._stream_partial(self._call, body, events)
            return False
        self._complete(self._call, body, events)
        self._call = None
        self._pos = end + len(CLOSE)
        return True

    def _stream_partial(self, call: _Call, body: str, events: list[tuple[str, Any]]) -> None:
        if call.args_start < 0 and not self._start_call(call, body, events):
            return
        held = len("}") + _partial_suffix(body, CLOSE)
        ready = body[call.args_start : max(call.args_start, len(body) - held)]
        if len(ready) > len(call.arguments):
            self._emit_arguments(call, ready, events)

    def _start_call(self, call: _Call, body: str, events: list[tuple[str, Any]]) -> bool:
        match = _HEADER.match(body)
        if match is None:
            return False
        if self.calls and not self.parallel:
            return False
        call.name = json.loads(f'"{match.group(1)}"')
        call.args_start = match.end()
        self.calls.append(call)
        delta = {
            "index": call.index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        events.append(("tool_call", delta))
        return True

    def _complete(self, call: _Call, body: str, events: list[tuple[str, Any]]) -> None:
        if self.stream_arguments:
            if call.args_start < 0 and not self._start_call(call, body, events):
                return
            if call.args_start >= 0 and call in self.calls:
                tail = body[call.args_start :].rstrip()
                self._emit_arguments(call, tail[:-1].rstrip() if tail.endswith("}") else tail, events)
            return
        parsed = _parse_call(body)
        if parsed is None:
            self._content(OPEN + body + CLOSE, events)
            return
        if self.calls and not self.parallel:
            logger.info("dropping tool call %r: parallel_tool_calls is false", parsed[0])
            return
        call.name, call.arguments = parsed
        self.calls.append(call)
        function = {"name": call.name, "arguments": call.arguments}
        events.append(("tool_call", {"index": call.index, "id": call.id, "type": "function", "function": function}))

    def _emit_arguments(self, call: _Call, arguments: str, events: list[tuple[str, Any]]) -> None:
        if call not in self.calls or not arguments.startswith(call.arguments):
            return
        piece = arguments[len(call.arguments) :]
        if piece:
            call.arguments = arguments
            events.append(("tool_call", {"index": call.index, "function": {"arguments": piece}}))

    def _content(self, text: str, events: list[tuple[str, Any]]) -> None:
        if text:
            self.content += text
            events.append(("content", text))


def _parse_call(body: str) -> tuple[str, str] | None:
    """(name, arguments as a JSON string) of a complete call body, or None if it is not one."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        return value["name"], arguments
    return value["name"], json.dumps(arguments, ensure_ascii=False)


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
