"""One rule for backend names: config keys, bundle manifests and command-line arguments all use it."""

from __future__ import annotations

import pytest

from main_backend.backend_name import InvalidBackendName, check_backend_name, is_backend_name
from main_backend.cli import build_parser
from main_backend.config import ConfigError, parse_config
from main_backend.packing.manifest import BackendInfo

GOOD = ["echo", "vlm", "echo2", "remote-model", "face_box", "a" * 63]
BAD = ["", "..", ".", "../../x", "/etc", "a/b", "a\\b", "Echo", "2fast", "-x", "_x", "a b", "a\0b", "a" * 64, "é"]


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass(name: str) -> None:
    assert is_backend_name(name) and check_backend_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_names_that_could_be_paths_or_odd_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidBackendName, match="lowercase letter"):
        check_backend_name(name, "backend.name")


def test_a_config_key_that_breaks_the_rule_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"model_backends key '\.\./x' is not a valid backend name"):
        parse_config({"model_backends": {"../x": {"port": 9000}}})


def test_a_manifest_name_that_breaks_the_rule_is_refused() -> None:
    with pytest.raises(ValueError, match=r"backend\.name"):
        BackendInfo(name="../../x", version="1", folder="x_backend", port=1)
    with pytest.raises(ValueError, match=r"backend\.folder"):
        BackendInfo(name="x", version="1", folder="..", port=1)


@pytest.mark.parametrize("argv", [["status", "../x"], ["pack", "/etc", "-o", "f"], ["stop", "A"], ["setup", "a/b"]])
def test_command_line_names_follow_the_rule(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert "not a valid backend name" in capsys.readouterr().err
