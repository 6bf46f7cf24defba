"""How the hub reaches a remote backend: its TLS trust (CA file or pinned certificate) and token."""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl

from main_backend.config import REPO_ROOT, BackendConfig
from model_backends.base.errors import ErrorCode, HubError


class CertificatePinMismatch(ssl.SSLError):
    """The backend's certificate is not the pinned one."""


class CertificatePin:
    """Trust exactly one certificate, by the SHA-256 digest of its DER bytes (self-signed ones
    need no CA). The TLS handshake itself checks no chain; ``check`` on the peer's certificate,
    before any byte of the WebSocket is trusted, does."""

    def __init__(self, digest: bytes) -> None:
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError("a certificate pin is a SHA-256 digest (32 bytes)")
        self.digest = digest

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def check(self, der: bytes | None) -> None:
        got = hashlib.sha256(der).digest() if der else b""
        if not hmac.compare_digest(got, self.digest):
            raise CertificatePinMismatch(
                f"certificate fingerprint mismatch: expected {self.digest.hex()}, got {got.hex() or 'no certificate'}"
            )


def tls_for(config: BackendConfig) -> ssl.SSLContext | CertificatePin | None:
    """The TLS check for a ``wss://`` backend: a pinned SHA-256 certificate digest, a CA file, or
    the system's CAs (None). Plain ``ws://`` needs none (the config allows it only on loopback)."""
    if config.tls_fingerprint:
        return CertificatePin(bytes.fromhex(config.tls_fingerprint))
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
