"""How the hub reaches a remote backend: its TLS trust (CA file or pinned certificate) and token."""

from __future__ import annotations

import os
import ssl

import aiohttp

from main_backend.config import REPO_ROOT, BackendConfig
from model_backends.base.errors import ErrorCode, HubError


def tls_for(config: BackendConfig) -> ssl.SSLContext | aiohttp.Fingerprint | None:
    """The TLS check for a ``wss://`` backend: a pinned SHA-256 certificate digest, a CA file, or
    the system's CAs (None). Plain ``ws://`` needs none (the config allows it only on loopback)."""
    if config.tls_fingerprint:
        return aiohttp.Fingerprint(bytes.fromhex(config.tls_fingerprint))
    if config.tls_ca_file:
        path = config.tls_ca_file if config.tls_ca_file.is_absolute() else REPO_ROOT / config.tls_ca_file
        try:
            return ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise HubError(f"{config.name}: cannot use tls_ca_file {path}: {exc}", code=ErrorCode.BAD_REQUEST) from exc
    return None


def token_for(config: BackendConfig) -> str | None:
    """The remote backend's token, read from the variable ``token_env`` names (never from the file)."""
    if not config.token_env:
        return None
    token = os.environ.get(config.token_env)
    if not token:
        raise HubError(
            f"{config.name}: token_env names {config.token_env}, which is not set", code=ErrorCode.BAD_REQUEST
        )
    return token
