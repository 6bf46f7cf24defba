"""The state database's schema as numbered migrations; ``PRAGMA user_version`` is the applied number.

Each migration runs in one transaction together with the version bump, so a crash mid-migration
leaves the file at the previous version, never half-migrated. A file written by a newer hub
(a version above the last one known here) is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

#: Migration N (1-based) is ``MIGRATIONS[N - 1]``: the statements that take version N-1 to N.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE bindings (
            capability TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE switch_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            capability TEXT NOT NULL,
            old_model TEXT,
            new_model TEXT NOT NULL,
            actor TEXT NOT NULL
        )""",
        """CREATE TABLE providers (
            name TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE downloads (
            id TEXT PRIMARY KEY,
            repo_id TEXT NOT NULL,
            revision TEXT,
            endpoint TEXT,
            state TEXT NOT NULL,
            bytes_done INTEGER NOT NULL DEFAULT 0,
            bytes_total INTEGER,
            files_done INTEGER NOT NULL DEFAULT 0,
            files_total INTEGER,
            path TEXT,
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ),
)


class SchemaError(Exception):
    """The database cannot be used by this hub (written by a newer version, or a migration failed)."""


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> tuple[int, int]:
    """Apply the migrations the file lacks, each atomically; returns (version before, version after).

    ``conn`` must be in autocommit mode (``isolation_level=None``): transactions are explicit here.
    """
    before = schema_version(conn)
    if before > len(migrations):
        raise SchemaError(
            f"the state database is at schema version {before}, newer than this hub knows ({len(migrations)}); "
            "upgrade the hub or point hub.state_dir elsewhere"
        )
    for number in range(before + 1, len(migrations) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[number - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise SchemaError(f"migration to schema version {number} failed: {exc}") from exc
        conn.execute("COMMIT")
    return before, schema_version(conn)
