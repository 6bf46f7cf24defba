"""The per-backend placement keys of config/models.yaml, validated with the rest of the backend's entry.

``placement: local`` (default) is a process the hub starts; ``remote`` is a backend running on
another host, reached at ``url`` (``wss://`` with a token; plain ``ws://`` only on loopback);
``ray`` is ``replicas`` (a count, or an autoscaling range) of the backend placed on a Ray cluster,
each with ``num_cpus`` / ``num_gpus``, on the cluster at ``ray_address`` (or a local one).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Keys that only make sense for one placement; setting them for another is refused, not ignored.
RAY_KEYS = frozenset({"replicas", "num_cpus", "num_gpus", "ray_address", "node_host"})
REMOTE_KEYS = frozenset({"url", "token_env", "tls_ca_file", "tls_fingerprint"})
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class ReplicaRange(BaseModel):
    """An autoscaling range: between ``min`` and ``max`` replicas, about ``target_in_flight`` each."""

    model_config = ConfigDict(extra="forbid")

    min: int = Field(default=1, ge=1)
    max: int = Field(ge=1)
    target_in_flight: float = Field(default=2.0, gt=0)
    scale_down_after: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaRange:
        if self.max < self.min:
            raise ValueError(f"replicas.max ({self.max}) is below replicas.min ({self.min})")
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalise_fingerprint(value: str) -> str:
    """``AB:CD:...`` or ``abcd...`` (SHA-256 of the DER certificate) as 64 lowercase hex digits."""
    digits = value.replace(":", "").strip().lower()
    if not _FINGERPRINT.match(digits):
        raise ValueError("tls_fingerprint must be a SHA-256 digest: 64 hex digits, colons allowed")
    return digits


class PlacementSettings(BaseModel):
    """Mixed into ``BackendConfig``: where the backend runs and how the hub reaches it."""

    placement: Literal["local", "remote", "ray"] = "local"
    # remote
    remote_url: str | None = Field(default=None, alias="url")
    token_env: str | None = None
    tls_ca_file: Path | None = None
    tls_fingerprint: str | None = None
    # ray
    replicas: int | ReplicaRange = Field(default=1)
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    ray_address: str | None = None
    node_host: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _remote_endpoint(cls, data: Any) -> Any:
        """A remote backend's host and port come from its url (they name the same endpoint)."""
        if isinstance(data, dict) and data.get("placement") == "remote" and isinstance(data.get("url"), str):
            parts = urlsplit(data["url"])
            data = dict(data)
            data.setdefault("host", parts.hostname or "")
            if parts.port:
                data.setdefault("port", parts.port)
            else:
                data.setdefault("port", 443 if parts.scheme == "wss" else 80)
            data["managed"] = False  # no supervisor of the hub starts it
        if isinstance(data, dict) and data.get("placement") == "remote":
            data = {**data, "managed": False}
            data.setdefault("port", 0)
        if isinstance(data, dict) and data.get("placement") == "ray":
            data = dict(data)
            data.setdefault("port", 0)
            data["managed"] = False  # no supervisor of the hub starts it
        return data

    @model_validator(mode="after")
    def _placement_keys(self) -> PlacementSettings:
        given = self.model_fields_set | ({"url"} if "remote_url" in self.model_fields_set else set())
        wrong = (RAY_KEYS - {"replicas"} if self.placement != "ray" else set()) | (
            REMOTE_KEYS if self.placement != "remote" else set()
        )
        stray = sorted(k for k in wrong & given)
        if self.placement != "ray" and "replicas" in given:
            stray.append("replicas")
        if stray:
            raise ValueError(f"{', '.join(stray)} only apply to placement {_owner(stray[0])!r}")
        if isinstance(self.replicas, int) and self.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if self.placement == "remote":
            self._check_remote()
        if self.placement != "ray" and getattr(self, "port", 1) < 1:
            raise ValueError("port must be 1-65535 for a backend that is not placed on Ray")
        if self.tls_fingerprint is not None:
            self.tls_fingerprint = normalise_fingerprint(self.tls_fingerprint)
        return self

    def _check_remote(self) -> None:
        if not self.remote_url:
            raise ValueError("placement 'remote' needs url: wss://HOST:PORT")
        parts = urlsplit(self.remote_url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"url {self.remote_url!r} must be ws:// or wss:// with a host")
        if parts.scheme == "ws" and not is_loopback(parts.hostname):
            raise ValueError(
                f"url {self.remote_url!r}: plain ws:// is refused for a non-loopback host; use wss:// "
                "(with tls_ca_file or tls_fingerprint for a private certificate)"
            )
        if parts.scheme == "ws" and (self.tls_ca_file or self.tls_fingerprint):
            raise ValueError("tls_ca_file / tls_fingerprint need a wss:// url")

    @property
    def replica_range(self) -> tuple[int, int]:
        """(min, max) replicas; equal for a fixed count."""
        if isinstance(self.replicas, ReplicaRange):
            return self.replicas.min, self.replicas.max
        return self.replicas, self.replicas


def check_one_ray_address(backends: Mapping[str, PlacementSettings]) -> None:
    """A hub joins one Ray cluster: every ``placement: ray`` backend names the same ``ray_address``."""
    addresses = {name: b.ray_address or "local" for name, b in backends.items() if b.placement == "ray"}
    if len(set(addresses.values())) > 1:
        listed = ", ".join(f"{n}: {a}" for n, a in addresses.items())
        raise ValueError(f"model_backends.*.ray_address: one Ray cluster per hub, but {listed}")


def _owner(key: str) -> str:
    return "remote" if key in REMOTE_KEYS else "ray"
