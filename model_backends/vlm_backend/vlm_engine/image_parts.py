"""Decodes one image of a chat message (data URL, raw base64 or bytes) into a PIL image, with limits."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from model_backends.base.errors import BadRequestError, TooLargeError
from model_backends.base.images import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_PIXELS, image_size


def decode_image_part(value: Any, where: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> Any:
    """An RGB ``PIL.Image`` from a data URL, raw base64 text or raw bytes."""
    raw = _image_bytes(value, where, max_bytes)
    size = image_size(raw)
    if size is not None and size[0] * size[1] > DEFAULT_MAX_PIXELS:
        raise TooLargeError(f"{where}: image of {size[0]}x{size[1]} pixels exceeds {DEFAULT_MAX_PIXELS} pixels")
    return _open_rgb(raw, where)


def _image_bytes(value: Any, where: str, max_bytes: int) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    elif isinstance(value, str) and value:
        if value.startswith(("http://", "https://")):
            raise BadRequestError(f"{where}: remote image URLs are not fetched; send a data: URL or base64")
        text = value.partition(",")[2] if value.startswith("data:") else value
        if len(text) * 3 // 4 > max_bytes:
            raise TooLargeError(f"{where}: image is larger than {max_bytes} bytes")
        try:
            raw = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise BadRequestError(f"{where}: image is not valid base64: {exc}") from exc
    else:
        raise BadRequestError(f"{where}: image must be a data URL, base64 text or a binary frame")
    if not raw:
        raise BadRequestError(f"{where}: image is empty")
    if len(raw) > max_bytes:
        raise TooLargeError(f"{where}: image is larger than {max_bytes} bytes")
    return raw


def _open_rgb(raw: bytes, where: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.width * img.height > DEFAULT_MAX_PIXELS:
                raise TooLargeError(f"{where}: image of {img.width}x{img.height} pixels is too large")
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadRequestError(f"{where}: not a decodable image: {exc}") from exc
