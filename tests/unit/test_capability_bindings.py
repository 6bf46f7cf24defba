"""CapabilityBindings: config defaults, operator overrides, resolution of capability names."""

from __future__ import annotations

from main_backend.capabilities.bindings import CapabilityBindings


def test_operator_bindings_win_over_the_config_and_capability_names_resolve() -> None:
    bindings = CapabilityBindings({"text": "vlm", "vision": "vlm"})
    assert bindings.set("text", "remote") == "vlm"
    assert (bindings.get("text"), bindings.source("text")) == ("remote", "operator")
    assert (bindings.get("vision"), bindings.source("vision")) == ("vlm", "config")
    assert (bindings.get("tool_use"), bindings.source("tool_use")) == (None, None)
    assert bindings.resolve("text") == "remote"
    assert bindings.resolve("tool_use") == "tool_use"  # not bound: the name stays as sent
    assert bindings.resolve("vlm") == "vlm"
    assert bindings.uses("vlm") == ["vision"]


def test_stored_bindings_to_models_that_are_gone_fall_back_to_the_config() -> None:
    bindings = CapabilityBindings({"text": "vlm"})
    skipped = bindings.restore({"text": "old-provider", "vision": "vlm", "colour": "vlm"}, lambda m: m == "vlm")
    assert bindings.as_dict() == {"vision": "vlm", "text": "vlm", "structured_output": None, "tool_use": None}
    assert len(skipped) == 2
    assert any("'old-provider'" in line for line in skipped)
    assert any("'colour'" in line for line in skipped)
