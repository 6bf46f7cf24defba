"""The wire protocol, without sockets."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from model_backends.base import protocol
from model_backends.base.errors import ErrorCode, ProtocolError


def test_decodes_a_seed_inference_request() -> None:
    msg = protocol.decode('{"type":"inference_request","request_id":"r1","data":{"image":"aGk="}}')
    assert isinstance(msg, protocol.InferenceRequest)
    assert (msg.request_id, msg.data, msg.priority) == ("r1", {"image": "aGk="}, 10)


def test_binary_envelope_round_trips_the_payload_into_data() -> None:
    frame = protocol.join_envelope(
        {"type": "inference_request", "request_id": "b", "binary_field": "eeg"}, b"\x00\x01\x02"
    )
    msg = protocol.decode(frame)
    assert isinstance(msg, protocol.InferenceRequest)
    assert msg.data == {"eeg": b"\x00\x01\x02"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{oops", ErrorCode.INVALID_JSON),
        ("42", ErrorCode.INVALID_JSON),
        ('{"type":"nope"}', ErrorCode.UNKNOWN_TYPE),
        ('{"request_id":"x"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"inference_request"}', ErrorCode.BAD_REQUEST),
        ('{"type":"inference_request","request_id":"x","priority":0}', ErrorCode.BAD_REQUEST),
        (b"\x00\x00\x00\x09{}", ErrorCode.BAD_REQUEST),
        (b"\x00\x00", ErrorCode.BAD_REQUEST),
    ],
)
def test_bad_frames_raise_protocol_error_with_a_code(frame: str | bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frame)
    assert info.value.code is code


def test_validation_errors_name_the_field() -> None:
    with pytest.raises(ProtocolError, match="request_id"):
        protocol.decode('{"type":"inference_request","data":{}}')


def test_error_messages_carry_a_retry_hint_from_their_code() -> None:
    assert protocol.error_message("r", "busy", ErrorCode.OVERLOADED).retryable is True
    assert protocol.error_message("r", "bad", ErrorCode.BAD_REQUEST).retryable is False


def test_encode_drops_unset_optionals() -> None:
    assert orjson.loads(protocol.encode(protocol.HealthCheck())) == {"type": "health_check"}


@given(st.binary(max_size=200))
def test_any_bytes_either_decode_or_raise_protocol_error(frame: bytes) -> None:
    try:
        protocol.decode(frame)
    except ProtocolError:
        pass


@given(
    st.dictionaries(
        st.sampled_from(["type", "request_id", "data", "priority", "model"]),
        st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
    )
)
def test_any_json_object_either_validates_or_raises_protocol_error(obj: dict[str, object]) -> None:
    try:
        protocol.decode(orjson.dumps(obj))
    except ProtocolError:
        pass


_field_values = (
    st.none()
    | st.booleans()
    | st.integers(-5, 20)
    | st.floats(allow_nan=False)
    | st.text(max_size=3)
    | st.lists(st.text(max_size=2), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
)


@given(
    st.fixed_dictionaries(
        {"type": st.just("inference_request")},
        optional={
            k: _field_values
            for k in ("request_id", "data", "model", "models", "priority", "stream_id", "timeout", "stream")
        },
    )
)
def test_the_hot_path_header_check_never_accepts_what_the_model_refuses(obj: dict[str, object]) -> None:
    header = protocol.fast_request_header(obj)
    if header is None:
        return
    model = protocol.InferenceRequest.model_validate(obj)
    assert (model.request_id, model.priority, model.stream_id, model.model) == (
        header.request_id,
        header.priority,
        header.stream_id,
        header.model,
    )


def test_an_answer_is_spliced_not_re_encoded() -> None:
    raw = b'{"type":"inference_response","request_id":"h1f","data":{"ear":0.250,"pts":[[1.50,2e0]]},"done":true}'
    spliced = protocol.splice_answer(raw, "h1f", b'"request_id":"mine","model":"fatigue"')
    assert spliced == (
        b'{"type":"inference_response","request_id":"mine","model":"fatigue",'
        b'"data":{"ear":0.250,"pts":[[1.50,2e0]]},"done":true}'  # the payload's own bytes (orjson writes 0.25)
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"request_id":"h1f","type":"inference_response"}',  # another key order
        b'{"type":"inference_response","request_id":"h2","data":{}}',  # another request
        b'{"type":"a\\"b","request_id":"h1f"}',  # an escaped quote in the type
        b'{"type": "inference_response", "request_id": "h1f"}',  # spaces
    ],
)
def test_an_answer_in_another_shape_is_left_to_the_caller(raw: bytes) -> None:
    assert protocol.splice_answer(raw, "h1f", b'"request_id":"x"') is None


def test_captured_at_is_a_checked_header_field() -> None:
    base = {"type": "inference_request", "request_id": "r", "model": "m", "data": {}}
    assert protocol.fast_request_header({**base, "captured_at": 1764600000.25}).captured_at == 1764600000.25  # type: ignore[union-attr]
    assert protocol.fast_request_header({**base, "captured_at": "now"}) is None
    with pytest.raises(ValidationError, match="captured_at"):
        protocol.InferenceRequest.model_validate({**base, "captured_at": -1})


@pytest.mark.parametrize("as_text", [False, True])
def test_a_message_as_deep_as_the_limit_allows_is_parsed(as_text: bool) -> None:
    frame = '{"request_id":"ok","x":' + '[{"k":' * 63 + "[0]" + "}]" * 63 + "}"  # 128 levels
    assert protocol.parse_json(frame if as_text else frame.encode())["request_id"] == "ok"


@pytest.mark.parametrize("as_text", [False, True])
def test_a_message_one_level_too_deep_is_refused_with_its_request_id(as_text: bool) -> None:
    frame = '{"request_id":"deep","x":' + '[{"k":' * 64 + "0" + "}]" * 64 + "}"  # 129 levels
    with pytest.raises(ProtocolError, match="deeper than 128") as refused:
        protocol.parse_json(frame if as_text else frame.encode())
    assert refused.value.request_id == "deep"


def test_many_brackets_that_do_not_nest_are_not_refused() -> None:
    frame = orjson.dumps({"request_id": "wide", "rows": [{"x": [i]} for i in range(1000)]})
    assert len(protocol.parse_json(frame)["rows"]) == 1000
