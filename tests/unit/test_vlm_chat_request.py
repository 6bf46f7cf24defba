"""parse_chat_request: OpenAI-shaped chat data in, a validated ChatRequest (or a bad_request) out."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest

from model_backends.base.errors import BadRequestError, TooLargeError
from model_backends.vlm_backend.vlm_engine.chat_request import parse_chat_request

Image = pytest.importorskip("PIL.Image")


def png(width: int = 8, height: int = 6) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def user(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


def test_string_content_becomes_one_text_part_with_default_sampling() -> None:
    req = parse_chat_request(user("hi"))
    assert req.messages == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert (req.max_tokens, req.temperature, req.top_p, req.stop, req.seed) == (256, 0.0, 1.0, [], None)


def test_image_url_parts_become_image_placeholders_and_decoded_images() -> None:
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    raw = base64.b64encode(png(4, 4)).decode()
    content = [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "and"},
        {"type": "image_url", "image_url": {"url": raw}},
    ]
    req = parse_chat_request(user(content))
    assert [p["type"] for p in req.messages[0]["content"]] == ["image", "text", "image"]
    assert [im.size for im in req.images] == [(8, 6), (4, 4)]
    assert all(im.mode == "RGB" for im in req.images)


def test_a_binary_frame_image_goes_to_the_last_user_message() -> None:
    data = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what?"}]}
    data["image"] = png()
    req = parse_chat_request(data)
    assert req.messages[1]["content"][0] == {"type": "image"}
    assert len(req.images) == 1


def test_stop_may_be_a_string_or_a_list() -> None:
    assert parse_chat_request({**user("x"), "stop": "END"}).stop == ["END"]
    assert parse_chat_request({**user("x"), "stop": ["a", "b"]}).stop == ["a", "b"]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"messages": "hi"},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": [{"role": "system", "content": "x"}]},
        user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]),
        user([{"type": "image_url", "image_url": {"url": base64.b64encode(b"garbage").decode()}}]),
        user([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]),
        {**user("x"), "max_tokens": -1},
        {**user("x"), "top_p": 0},
        {**user("x"), "seed": "abc"},
        {"messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": "x"}]}]},
    ],
)
def test_bad_input_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError):
        parse_chat_request(data)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    header = png(1, 1)
    huge = header[:16] + (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big") + header[24:]
    with pytest.raises(TooLargeError):
        parse_chat_request(user([{"type": "image_url", "image_url": {"url": base64.b64encode(huge).decode()}}]))
