"""The outbox of a backend connection: control before data, data bounded in bytes."""

from __future__ import annotations

import pytest

from main_backend.outbox import Outbox
from model_backends.base.errors import OverloadedError


def test_control_frames_go_before_every_waiting_data_frame() -> None:
    box = Outbox(max_data_bytes=10_000)
    box.put_data(b"frame-1")
    box.put_data(b"frame-2")
    box.put_control(b"health_check")
    assert [box.pop(), box.pop(), box.pop(), box.pop()] == [b"health_check", b"frame-1", b"frame-2", None]


def test_data_past_the_byte_budget_is_refused_with_overloaded_and_control_still_goes() -> None:
    box = Outbox(max_data_bytes=2_000_000, name="slow")
    box.put_data(b"x" * 1_000_000)
    box.put_data(b"x" * 1_000_000)
    with pytest.raises(OverloadedError, match="slow"):
        box.put_data(b"x" * 1_000_000)
    box.put_control(b"ping")
    assert box.data_bytes == 2_000_000
    assert box.pop() == b"ping"
    box.pop()
    box.put_data(b"x" * 1_000_000)  # room again once the writer took one
    assert box.data_bytes == 2_000_000


def test_a_frame_larger_than_the_budget_goes_alone() -> None:
    box = Outbox(max_data_bytes=10)
    box.put_data(b"y" * 100)
    with pytest.raises(OverloadedError):
        box.put_data(b"z")
