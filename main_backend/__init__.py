"""The hub: client WebSocket and HTTP surface, router, backend links, supervisor, CLI."""

__version__ = "0.1.0"
