"""CLI tables: aligned on plain text, coloured only when asked (a TTY), never when piped."""

from __future__ import annotations

import io

from main_backend.terminal import Style, key_values, table


def test_a_piped_stream_gets_no_colour() -> None:
    assert not Style(io.StringIO()).enabled
    assert Style(enabled=False).paint("ready", "green") == "ready"


def test_columns_align_on_the_visible_text_even_when_coloured() -> None:
    rows = [["echo", ("ready", "green")], ["echo-longer", ("down", "red+bold")]]
    plain = table(["NAME", "STATE"], rows, Style(enabled=False)).splitlines()
    assert plain == ["NAME         STATE", "echo         ready", "echo-longer  down"]
    coloured = table(["NAME", "STATE"], rows, Style(enabled=True)).splitlines()
    assert coloured[1] == "echo         \x1b[32mready\x1b[0m"
    assert coloured[2] == "echo-longer  \x1b[31;1mdown\x1b[0m"


def test_key_values_align_their_values() -> None:
    text = key_values([("pid", "12"), ("endpoint", "ws://h:1")], Style(enabled=False))
    assert text.splitlines() == ["  pid:      12", "  endpoint: ws://h:1"]
