"""The OpenAI-shaped HTTP gateway: ``/v1/models`` and ``/v1/chat/completions`` over the hub's backends.

Local chat backends (``chat: true`` in config) are reached through the router; names listed
under ``external_providers`` are proxied to another OpenAI-compatible server. ``routes.mount``
is called by ``main_backend.app`` when this package is present.
"""
