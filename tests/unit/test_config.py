"""config/models.yaml validation."""

from __future__ import annotations

import pytest

from main_backend.config import DEFAULT_CONFIG, ConfigError, load_config, parse_config


def test_the_shipped_config_is_valid_and_lists_the_four_backends() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert {"fatigue", "emotion", "vlm", "eeg"} <= set(config.model_backends)
    assert all(b.is_managed for b in config.model_backends.values())


def test_an_original_format_entry_is_not_managed() -> None:
    config = parse_config(
        {"model_backends": {"fatigue": {"host": "127.0.0.1", "port": 8766, "enabled": True, "request_timeout": 5}}}
    )
    backend = config.model_backends["fatigue"]
    assert (backend.is_managed, backend.request_timeout, backend.name) == (False, 5, "fatigue")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"model_backends": {"a": {"port": "x"}}}, "model_backends.a.port"),
        ({"model_backends": {"a": {"port": 1, "keep_alive": -5}}}, "model_backends.a.keep_alive"),
        ({"model_backends": {"a": {"port": 1, "colour": "red"}}}, "model_backends.a.colour"),
        ({"hub": {"port": "many"}}, "hub.port"),
    ],
)
def test_errors_name_the_bad_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(raw)


def test_two_backends_on_one_port_are_refused() -> None:
    with pytest.raises(ConfigError, match="also used by a"):
        parse_config({"model_backends": {"a": {"port": 9000}, "b": {"port": 9000}}})


def test_eeg_keeps_every_chunk_of_a_stream_while_cameras_keep_the_latest_frame() -> None:
    backends = load_config(DEFAULT_CONFIG).model_backends

    assert backends["eeg"].latest_frame_wins is False
    assert backends["fatigue"].latest_frame_wins is True
    assert backends["emotion"].latest_frame_wins is True


def test_a_file_in_the_hub_format_starts_its_backends_unless_one_says_managed_false() -> None:
    config = parse_config(
        {"version": 2, "model_backends": {"a": {"port": 9001}, "b": {"port": 9002, "managed": False}}}
    )
    assert (config.model_backends["a"].is_managed, config.model_backends["b"].is_managed) == (True, False)


def test_a_file_without_version_is_the_original_format_whatever_keys_its_entries_have(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = parse_config({"model_backends": {"a": {"port": 9001, "path": "x", "memory_mb": 100}}})
    assert config.version == 1
    assert config.model_backends["a"].is_managed is False  # not guessed from the keys it has
    assert "version: 2" in caplog.text  # but the user is told how to have it started


def test_an_unknown_version_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="version"):
        parse_config({"version": 3, "model_backends": {}})


def test_a_file_in_the_original_format_loads_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    parse_config({"model_backends": {"a": {"host": "127.0.0.1", "port": 9001, "enabled": True}}})
    assert caplog.text == ""
