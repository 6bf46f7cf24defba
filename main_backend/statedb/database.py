"""StateDatabase: the SQLite file's reads and writes, synchronous, used from one thread only.

The file is in WAL mode with ``synchronous=FULL``: a write is either wholly in the file after a
crash (process or power) or not at all, and readers never see half of one. Every write that
touches two rows (a binding and its history entry) is one transaction. ``StateStore`` runs these
methods on its own thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from main_backend.statedb.schema import migrate

logger = logging.getLogger(__name__)

DB_FILE = "hub.sqlite3"
BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class SwitchRecord:
    """One change of a capability's binding, as the history keeps it."""

    at: float
    capability: str
    old_model: str | None
    new_model: str
    actor: str


@dataclass
class DownloadRecord:
    """One model download and how far it got."""

    id: str
    repo_id: str
    revision: str | None
    endpoint: str | None
    state: str
    bytes_done: int = 0
    bytes_total: int | None = None
    files_done: int = 0
    files_total: int | None = None
    path: str | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class StateDatabase:
    """Opens (creating and migrating) ``state_dir/hub.sqlite3``; one connection, one thread."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / DB_FILE
        self._conn: sqlite3.Connection | None = None

    def open(self) -> tuple[int, int]:
        """Create the folder and file as needed, set WAL, migrate; returns (schema before, after)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._conn = conn
        versions = migrate(conn)
        if versions[0] != versions[1]:
            logger.info("state database %s: schema %d -> %d", self.path, *versions)
        return versions

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the state database is not open")
        return self._conn

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``statements`` as one transaction: all of them land, or none."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                conn.execute(sql, params)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ------------------------------------------------------------------ bindings
    def bindings(self) -> dict[str, str]:
        """The capabilities an operator bound (the config's defaults are not stored)."""
        return dict(self.conn.execute("SELECT capability, model FROM bindings ORDER BY capability").fetchall())

    def set_binding(self, capability: str, model: str, old_model: str | None, actor: str) -> SwitchRecord:
        record = SwitchRecord(time.time(), capability, old_model, model, actor)
        self._write(
            [
                (
                    "INSERT INTO bindings (capability, model, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(capability) DO UPDATE SET model = excluded.model, updated_at = excluded.updated_at",
                    (capability, model, record.at),
                ),
                (
                    "INSERT INTO switch_history (at, capability, old_model, new_model, actor) VALUES (?, ?, ?, ?, ?)",
                    (record.at, capability, old_model, model, actor),
                ),
            ]
        )
        return record

    def forget_binding(self, capability: str) -> None:
        self._write([("DELETE FROM bindings WHERE capability = ?", (capability,))])

    def switch_history(self, limit: int = 50) -> list[SwitchRecord]:
        rows = self.conn.execute(
            "SELECT at, capability, old_model, new_model, actor FROM switch_history ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [SwitchRecord(*row) for row in rows]

    # ------------------------------------------------------------------ providers added at run time
    def providers(self) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute("SELECT name, config FROM providers ORDER BY name").fetchall()
        return {name: json.loads(config) for name, config in rows}

    def put_provider(self, name: str, config: dict[str, Any]) -> None:
        self._write(
            [
                (
                    "INSERT INTO providers (name, config, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                    (name, json.dumps(config), time.time()),
                )
            ]
        )

    def delete_provider(self, name: str) -> None:
        self._write([("DELETE FROM providers WHERE name = ?", (name,))])

    # ------------------------------------------------------------------ downloads
    def downloads(self) -> list[DownloadRecord]:
        rows = self.conn.execute(
            "SELECT id, repo_id, revision, endpoint, state, bytes_done, bytes_total, files_done, files_total, "
            "path, error, created_at, updated_at FROM downloads ORDER BY created_at"
        ).fetchall()
        return [DownloadRecord(*row) for row in rows]

    def save_download(self, record: DownloadRecord) -> None:
        record.updated_at = time.time()
        record.created_at = record.created_at or record.updated_at
        values = asdict(record)
        columns = ", ".join(values)
        updates = ", ".join(f"{c} = excluded.{c}" for c in values if c not in ("id", "created_at"))
        self._write(
            [
                (
                    f"INSERT INTO downloads ({columns}) VALUES ({', '.join('?' for _ in values)}) "
                    f"ON CONFLICT(id) DO UPDATE SET {updates}",
                    tuple(values.values()),
                )
            ]
        )
