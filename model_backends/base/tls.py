"""TLS for a backend that is reached from another host (``wss://``): its certificate and key."""

from __future__ import annotations

import ssl

CERT_ENV = "HUB_TLS_CERT"
KEY_ENV = "HUB_TLS_KEY"


def server_tls(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """A server context for ``cert_file``/``key_file`` (PEM), or None when neither is given.

    Raises ``ValueError`` when only one of them is given, ``OSError``/``ssl.SSLError`` when
    they cannot be read.
    """
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise ValueError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
