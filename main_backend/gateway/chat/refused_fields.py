"""OpenAI request fields that local models cannot honour: each is refused with a 400 that names it and says why.

Every other field of OpenAI's chat completion request is declared in ``protocol.ChatCompletionRequest``
and implemented; a field that is neither (a typo, a field from a newer API) is refused as
unrecognized, as OpenAI does. docs/gateway.md has the whole table.
"""

from __future__ import annotations

from typing import Any

from main_backend.gateway.openai_errors import GatewayError, invalid_request

REFUSED: dict[str, str] = {
    "audio": "audio output is not supported: local models answer in text",
    "functions": "the deprecated 'functions' is not supported; send 'tools'",
    "function_call": "the deprecated 'function_call' is not supported; send 'tool_choice'",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "reasoning_effort": "local models here do not reason in hidden tokens; leave reasoning_effort unset",
    "verbosity": "verbosity is not supported; ask for the length you want in the messages or set max_tokens",
    "prompt_cache_key": "there is no prompt cache to key",
    "prompt_cache_options": "there is no prompt cache to configure",
    "prompt_cache_retention": "there is no prompt cache to retain",
    "moderation": "moderation is not supported",
}


def refuse_unsupported(body: dict[str, Any]) -> None:
    """Raise a 400 naming the first refused field that is set (``null`` counts as unset)."""
    for name, why in REFUSED.items():
        if body.get(name) is not None:
            raise GatewayError(f"'{name}' is not supported: {why}", 400, "unsupported_parameter", param=name)


def unrecognized(name: str) -> GatewayError:
    return invalid_request(f"Unrecognized request argument supplied: {name}", param=name)
