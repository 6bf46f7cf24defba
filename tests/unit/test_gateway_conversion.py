"""OpenAI chat requests to a backend's data, and a backend's answers to OpenAI objects (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from main_backend.gateway.chat.conversion import ChunkStream, backend_data, completion_from
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
    assert data == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 7, "stream": True}


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
        (chat(n=2), "n"),
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
        {"index": 0, "message": {"role": "assistant", "content": "a cat"}, "finish_reason": "length", "logprobs": None}
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
