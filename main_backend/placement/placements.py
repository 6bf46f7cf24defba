"""Placements: builds each backend's link for where it runs, and owns the Ray connection.

``local`` and ``remote`` backends get a :class:`BackendLink` (a remote one with its TLS check
and token); ``ray`` backends a :class:`ReplicaSetLink` over replicas placed on the one Ray
cluster this hub joins (or starts), which is shut down with the hub.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from main_backend.link import BackendLink
from main_backend.placement.ray_cluster import RayCluster
from main_backend.placement.remote import tls_for, token_for
from main_backend.placement.replica_link import ReplicaListener, ReplicaSetLink
from model_backends.base.errors import ErrorCode, HubError

if TYPE_CHECKING:
    from pathlib import Path

    from main_backend.backend_runtime import BackendRuntime

logger = logging.getLogger(__name__)


class Placements:
    """One per hub: the links of every backend, by placement."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._ray: RayCluster | None = None

    def make_link(
        self,
        runtime: BackendRuntime,
        listener: ReplicaListener,
        *,
        token: str | None,
        max_message_bytes: int,
    ) -> BackendLink | ReplicaSetLink:
        config = runtime.config
        if config.placement == "ray":
            return ReplicaSetLink(
                config,
                listener,
                self._cluster(config.ray_address),
                runtime.scheduler,
                str(self._log_dir),
                max_message_bytes,
            )
        if config.placement == "remote":
            return BackendLink(config, listener, token_for(config), max_message_bytes, tls=tls_for(config))
        return BackendLink(config, listener, token, max_message_bytes)

    def _cluster(self, address: str | None) -> RayCluster:
        if self._ray is None:
            self._ray = RayCluster(address)
        elif (self._ray.address or "local") != (address or "local"):
            raise HubError(
                f"every ray backend must use one ray_address ({self._ray.address or 'local'} != {address or 'local'})",
                code=ErrorCode.BAD_REQUEST,
            )
        return self._ray

    async def close(self) -> None:
        if self._ray is not None:
            try:
                await self._ray.shutdown()
            except (TimeoutError, RuntimeError) as exc:
                logger.warning("ray: shutdown: %s", exc)
