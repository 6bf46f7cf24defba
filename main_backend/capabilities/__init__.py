"""Capability bindings: ``vision``, ``text``, ``structured_output``, ``tool_use`` -> a chat model."""
