"""OpenAI chat requests to a backend's data, and a backend's answers to OpenAI objects (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from main_backend.gateway.chat.conversion import ChunkStream, backend_data, completion_from, completion_from_choices
from main_backend.gateway.chat.serving import parse_body, validate_chat
from main_backend.gateway.openai_errors import GatewayError, error_type
from model_backends.base.errors import ErrorCode

IMAGE = "data:image/png;base64,iVBORw0KGgo="


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "vlm", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_backend_data_carries_messages_and_sampling_and_passes_images_through() -> None:
    content = [{"type": "text", "text": "what is it"}, {"type": "image_url", "image_url": {"url": IMAGE}}]
    req = validate_chat(
        chat(
            messages=[{"role": "user", "content": content}], max_tokens=5, temperature=0.5, top_p=0.9, stop="x", seed=3
        )
    )
    assert backend_data(req) == {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 5,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["x"],
        "seed": 3,
    }


def test_backend_data_leaves_unset_options_to_the_backend_and_marks_streams() -> None:
    data = backend_data(validate_chat(chat(stream=True, max_completion_tokens=7)))
    assert data == {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 7,
        "temperature": 1.0,
        "stream": True,
    }


def test_the_default_temperature_is_openais_one() -> None:
    assert backend_data(validate_chat(chat()))["temperature"] == 1.0
    assert backend_data(validate_chat(chat(temperature=0)))["temperature"] == 0.0


def test_decoding_fields_go_to_the_backend_and_each_choice_gets_its_own_seed() -> None:
    fields = {
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "logprobs": True,
        "top_logprobs": 3,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"42": -100},
    }
    req = validate_chat(chat(seed=7, n=3, **fields))
    data = backend_data(req, choice=2)
    assert {k: data[k] for k in fields} == fields
    assert data["seed"] == 9


def test_tool_turns_and_developer_messages_are_accepted() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    data = backend_data(validate_chat(chat(messages=messages)))
    assert data["messages"][2] == {"role": "assistant", "tool_calls": [call]}
    assert data["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}


@pytest.mark.parametrize(
    "field",
    [
        "audio",
        "functions",
        "function_call",
        "prediction",
        "web_search_options",
        "reasoning_effort",
        "verbosity",
        "prompt_cache_key",
        "moderation",
    ],
)
def test_fields_local_models_cannot_honour_are_400_naming_them(field: str) -> None:
    with pytest.raises(GatewayError) as caught:
        validate_chat(chat(**{field: {"x": 1}}))
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, field, "unsupported_parameter")
    assert field in caught.value.message


def test_an_unrecognized_field_is_400_naming_it() -> None:
    with pytest.raises(GatewayError) as caught:
        validate_chat(chat(temprature=0.5))
    assert caught.value.param == "temprature"
    assert caught.value.message == "Unrecognized request argument supplied: temprature"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "vlm"}, "messages"),
        (chat(messages=[]), "messages"),
        (chat(messages="hi"), "messages"),
        (chat(messages=[{"role": "robot", "content": "hi"}]), "messages.0.role"),
        (chat(messages=[{"role": "user", "content": [{"type": "video"}]}]), "messages.0.content"),
        (chat(temperature=3), "temperature"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(n=9), "n"),
        (chat(store=True), "store"),
        (chat(modalities=["text", "audio"]), "modalities"),
        (chat(top_logprobs=21), "top_logprobs"),
        (chat(presence_penalty=2.5), "presence_penalty"),
        (chat(stream="yes"), "stream"),
    ],
)
def test_invalid_requests_are_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        validate_chat(body)
    assert (caught.value.status, caught.value.type) == (400, "invalid_request_error")
    assert caught.value.param is not None
    assert caught.value.param.startswith(param)


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b'{"messages": []}', b'{"model": 3}'])
def test_bodies_that_are_not_json_objects_with_a_model_are_400(raw: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_body(raw)
    assert caught.value.status == 400
    assert caught.value.body()["error"]["type"] == "invalid_request_error"


def test_completion_from_a_final_answer() -> None:
    data = {"text": "a cat", "finish_reason": "length", "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
    out = completion_from(data, "vlm", "chatcmpl-1").model_dump(mode="json")
    assert out["id"] == "chatcmpl-1"
    assert out["object"] == "chat.completion"
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "a cat", "refusal": None, "tool_calls": None},
            "finish_reason": "length",
            "logprobs": None,
        }
    ]
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_chunk_stream_sends_role_deltas_finish_and_usage_under_one_id() -> None:
    stream = ChunkStream(model="vlm", created=1)
    chunks = [stream.role(), stream.content("a"), stream.content(" cat")]
    chunks += stream.finish({"text": "a cat", "finish_reason": "stop", "usage": {"total_tokens": 3}}, True)
    assert {c["id"] for c in chunks} == {stream.id}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert [c["choices"][0]["delta"] for c in chunks[:3]] == [
        {"role": "assistant", "content": ""},
        {"content": "a"},
        {"content": " cat"},
    ]
    assert chunks[3]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    assert chunks[4]["choices"] == []
    assert chunks[4]["usage"]["total_tokens"] == 3


def test_chunk_stream_sends_final_text_that_no_partial_carried() -> None:
    stream = ChunkStream(model="vlm", created=1)
    stream.content("a")
    chunks = stream.finish({"text": "a cat", "finish_reason": "stop"}, False)
    assert [c["choices"][0]["delta"] for c in chunks] == [{"content": " cat"}, {}]


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        (ErrorCode.BAD_REQUEST, 400, "invalid_request_error"),
        (ErrorCode.TOO_LARGE, 413, "invalid_request_error"),
        (ErrorCode.BACKEND_UNAVAILABLE, 503, "server_error"),
        (ErrorCode.TIMEOUT, 504, "server_error"),
        (ErrorCode.RATE_LIMITED, 429, "rate_limit_error"),
        ("no_such_code", 500, "server_error"),
    ],
)
def test_backend_error_codes_map_to_http_statuses(code: ErrorCode | str, status: int, kind: str) -> None:
    error = GatewayError.from_hub(code, "went wrong")
    assert (error.status, error.type) == (status, kind)
    assert error.body() == {"error": {"message": "went wrong", "type": kind, "param": None, "code": error.code}}
    assert error_type(401) == "authentication_error"


def test_a_tool_call_answer_has_null_content_and_the_calls() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    data = {"text": "", "tool_calls": [call], "finish_reason": "tool_calls", "logprobs": {"content": [{"token": "x"}]}}
    choice = completion_from(data, "vlm").model_dump(mode="json")["choices"][0]
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [call]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["logprobs"] == {"content": [{"token": "x"}], "refusal": None}


def test_n_choices_are_indexed_and_their_usage_summed() -> None:
    answers = [{"text": t, "usage": {"prompt_tokens": 5, "completion_tokens": 2}} for t in ("a", "b")]
    out = completion_from_choices(answers, "vlm").model_dump(mode="json")
    assert [(c["index"], c["message"]["content"]) for c in out["choices"]] == [(0, "a"), (1, "b")]
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_chunk_stream_relays_tool_call_deltas_and_logprobs() -> None:
    stream = ChunkStream(model="vlm", created=1, index=1)
    head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    chunks = stream.partial({"tool_calls": [head]})
    chunks += stream.partial({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}], "logprobs": [{"t": 1}]})
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    chunks += stream.finish({"text": "", "tool_calls": [call], "finish_reason": "tool_calls"}, False)
    assert [c["choices"][0]["delta"].get("tool_calls") for c in chunks] == [
        [head],
        [{"index": 0, "function": {"arguments": "{}"}}],
        None,
    ]
    assert chunks[1]["choices"][0]["logprobs"] == {"content": [{"t": 1}], "refusal": None}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert {c["choices"][0]["index"] for c in chunks} == {1}


def test_a_load_failure_is_503_that_tells_the_sdk_not_to_retry() -> None:
    error = GatewayError.from_answer(
        {"type": "error", "code": "model_load_failed", "error": "model failed to load: no folder", "retry_after": 9.2}
    )
    assert (error.status, error.code, error.type) == (503, "model_load_failed", "server_error")
    assert error.headers == {"x-should-retry": "false", "Retry-After": "10"}
    overloaded = GatewayError.from_hub(ErrorCode.OVERLOADED, "busy", retry_after=1.0)
    assert overloaded.headers == {"Retry-After": "1"}


def test_backend_field_errors_and_context_length_name_the_param() -> None:
    bad = GatewayError.from_hub(ErrorCode.BAD_REQUEST, "data.logit_bias: key 'x' is not a token id")
    assert bad.param == "logit_bias"
    too_long = GatewayError.from_hub(ErrorCode.CONTEXT_LENGTH_EXCEEDED, "too long")
    assert (too_long.status, too_long.code, too_long.param) == (400, "context_length_exceeded", "messages")
