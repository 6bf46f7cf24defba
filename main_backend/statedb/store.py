"""StateStore: the state database for asyncio code; every call runs on the store's own thread.

SQLite calls block (disk, fsync, another process's lock), so none runs on the event loop: a
single worker thread owns the connection and runs the calls in order, and each wait has a
timeout.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from main_backend.config import ConfigError
from main_backend.statedb.database import StateDatabase
from main_backend.statedb.schema import SchemaError
from model_backends.base.errors import ErrorCode, HubError

logger = logging.getLogger(__name__)

T = TypeVar("T")

CALL_TIMEOUT_S = 10.0


class StateStore:
    """``await store.run(StateDatabase.method, *args)``; ``open`` before use, ``close`` at shutdown."""

    def __init__(self, state_dir: Path, timeout: float = CALL_TIMEOUT_S) -> None:
        self.db = StateDatabase(state_dir)
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="statedb")

    @property
    def path(self) -> Path:
        return self.db.path

    async def open(self) -> None:
        """Open (create, migrate) the file; an unusable one is a ``ConfigError`` naming ``hub.state_dir``."""
        try:
            await self.run(StateDatabase.open)
        except (sqlite3.Error, OSError, SchemaError) as exc:
            raise ConfigError(
                f"cannot use the state database {self.db.path}: {exc} (set hub.state_dir to a writable folder)"
            ) from exc
        logger.info("state database: %s", self.db.path)

    async def close(self) -> None:
        try:
            await self.run(StateDatabase.close)
        finally:
            self._executor.shutdown(wait=False)

    async def run(self, method: Callable[..., T], *args: Any) -> T:
        """Run ``method(self.db, *args)`` on the store's thread; a stuck disk becomes a ``HubError``."""
        loop = asyncio.get_running_loop()
        call = functools.partial(method, self.db, *args)
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, call), self._timeout)
        except TimeoutError:
            raise HubError(
                f"the state database {self.db.path} did not answer within {self._timeout:g}s", code=ErrorCode.TIMEOUT
            ) from None
