"""StopTextFilter: what a streaming VLM may send, and where its answer ends."""

from __future__ import annotations

from model_backends.vlm_backend.vlm_engine.stop_text import StopTextFilter


def feed_all(stops: list[str], steps: list[str]) -> tuple[str, StopTextFilter]:
    filt = StopTextFilter(stops)
    sent = "".join(filt.feed(text) for text in steps) + filt.flush()
    return sent, filt


def test_without_stops_everything_is_sent_as_it_comes() -> None:
    filt = StopTextFilter([])
    assert filt.feed("Hel") == "Hel"
    assert filt.feed("Hello") == "lo"
    assert filt.flush() == ""
    assert not filt.stopped


def test_a_stop_sequence_cuts_the_text_and_stops() -> None:
    sent, filt = feed_all(["\n\n"], ["Paris", "Paris.", "Paris.\n", "Paris.\n\n", "Paris.\n\nMore"])
    assert sent == "Paris."
    assert filt.text == "Paris."
    assert filt.stopped


def test_a_possible_start_of_a_stop_sequence_is_held_back() -> None:
    filt = StopTextFilter(["END"])
    assert filt.feed("abc E") == "abc "
    assert filt.feed("abc EN") == ""
    assert filt.feed("abc ENx") == "ENx"


def test_the_earliest_of_several_stops_wins() -> None:
    sent, _ = feed_all(["b", "a"], ["xxab"])
    assert sent == "xx"


def test_an_incomplete_utf8_character_waits_for_its_bytes() -> None:
    filt = StopTextFilter([])
    assert filt.feed("caf\ufffd") == "caf"
    assert filt.feed("café") == "é"


def test_nothing_is_sent_after_the_stop() -> None:
    filt = StopTextFilter(["."])
    assert filt.feed("Hi.") == "Hi"
    assert filt.feed("Hi. there") == ""
    assert filt.flush() == ""
