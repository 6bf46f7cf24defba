"""Registering an unpacked backend in models.yaml: comments kept, conflicts refused, the result valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from main_backend.config import ConfigError, load_config
from main_backend.packing.registration import RegistrationConflict, edit_text, register_backend

CONFIG = """# the lab's hub
hub:
  port: 8765

model_backends:
  # the face camera
  fatigue:
    path: model_backends/fatigue_backend
    port: 8771

# external providers come later
external_providers: {}
"""
ENTRY = {"enabled": True, "path": "/srv/emotion/backend/emotion_backend", "venv": "/srv/emotion/.venv", "port": 8772}


def test_a_new_entry_goes_into_model_backends_and_keeps_the_comments(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(CONFIG)

    assert register_backend(config, "emotion", ENTRY, force=False) == "added"

    text = config.read_text()
    assert "# the face camera" in text
    assert "# external providers come later" in text
    assert yaml.safe_load(text)["model_backends"]["emotion"] == ENTRY
    assert load_config(config).model_backends["emotion"].port == 8772


def test_the_same_entry_again_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(CONFIG)
    register_backend(config, "emotion", ENTRY, force=False)
    before = config.read_text()

    assert register_backend(config, "emotion", ENTRY, force=False) == "unchanged"
    assert config.read_text() == before


def test_a_different_entry_is_refused_without_force_and_replaced_with_it(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(CONFIG)
    register_backend(config, "emotion", ENTRY, force=False)
    moved = {**ENTRY, "path": "/elsewhere/backend/emotion_backend"}

    with pytest.raises(RegistrationConflict, match="--force"):
        register_backend(config, "emotion", moved, force=False)
    assert register_backend(config, "emotion", moved, force=True) == "replaced"

    raw = yaml.safe_load(config.read_text())
    assert raw["model_backends"]["emotion"] == moved
    assert raw["model_backends"]["fatigue"]["port"] == 8771
    assert config.read_text().count("emotion:") == 1


def test_a_port_clash_is_refused_naming_the_other_backend(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(CONFIG)

    with pytest.raises(ConfigError, match="fatigue"):
        register_backend(config, "emotion", {**ENTRY, "port": 8771}, force=False)
    assert config.read_text() == CONFIG


def test_a_missing_config_file_is_created(tmp_path: Path) -> None:
    config = tmp_path / "new" / "models.yaml"

    register_backend(config, "emotion", ENTRY, force=False)

    assert yaml.safe_load(config.read_text()) == {"model_backends": {"emotion": ENTRY}}


def test_text_edit_appends_a_section_when_there_is_none() -> None:
    text = edit_text("hub:\n  port: 1\n", "emotion", {"port": 2})

    assert yaml.safe_load(text) == {"hub": {"port": 1}, "model_backends": {"emotion": {"port": 2}}}


@pytest.mark.parametrize("empty", ["{}", "null", "~", "{ }  # none yet"])
def test_an_inline_empty_section_becomes_the_one_model_backends_key(tmp_path: Path, empty: str) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(f"hub:\n  port: 8765\nmodel_backends: {empty}\n")

    assert register_backend(config, "emotion", ENTRY, force=False) == "added"

    text = config.read_text()
    assert text.count("model_backends:") == 1, text
    assert yaml.safe_load(text)["model_backends"] == {"emotion": ENTRY}
