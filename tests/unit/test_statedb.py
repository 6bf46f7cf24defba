"""The state database: migrations are atomic and versioned, writes are transactions, WAL is on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from main_backend.statedb.database import StateDatabase
from main_backend.statedb.schema import MIGRATIONS, SchemaError, migrate, schema_version


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_a_new_database_is_created_at_the_latest_version_in_wal_mode(tmp_path: Path) -> None:
    db = StateDatabase(tmp_path / "state")
    assert db.open() == (0, len(MIGRATIONS))
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    again = StateDatabase(tmp_path / "state")
    assert again.open() == (len(MIGRATIONS), len(MIGRATIONS))
    again.close()


def test_migrations_apply_in_order_and_keep_the_data(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db")
    v1 = [("CREATE TABLE t (a TEXT)",)]
    assert migrate(conn, v1) == (0, 1)
    conn.execute("INSERT INTO t VALUES ('kept')")
    v2 = [*v1, ("ALTER TABLE t ADD COLUMN b INTEGER DEFAULT 7",)]
    assert migrate(conn, v2) == (1, 2)
    assert conn.execute("SELECT a, b FROM t").fetchall() == [("kept", 7)]


def test_a_failing_migration_leaves_the_previous_version_whole(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db")
    migrate(conn, [("CREATE TABLE t (a TEXT)",)])
    broken = [("CREATE TABLE t (a TEXT)",), ("CREATE TABLE u (b TEXT)", "INSERT INTO missing VALUES (1)")]
    with pytest.raises(SchemaError, match="version 2"):
        migrate(conn, broken)
    assert schema_version(conn) == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchall() == []


def test_a_database_from_a_newer_hub_is_refused(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(SchemaError, match="newer than this hub knows"):
        migrate(conn)


def test_a_binding_and_its_history_entry_land_together(tmp_path: Path) -> None:
    db = StateDatabase(tmp_path)
    db.open()
    db.set_binding("text", "vlm", None, "test")
    db.set_binding("text", "remote", "vlm", "test")
    assert db.bindings() == {"text": "remote"}
    assert [(r.old_model, r.new_model) for r in db.switch_history()] == [("vlm", "remote"), (None, "vlm")]


def test_providers_and_downloads_round_trip(tmp_path: Path) -> None:
    from main_backend.statedb.database import DownloadRecord

    db = StateDatabase(tmp_path)
    db.open()
    db.put_provider("remote", {"base_url": "http://x/v1", "model": "m"})
    assert db.providers() == {"remote": {"base_url": "http://x/v1", "model": "m"}}
    db.delete_provider("remote")
    assert db.providers() == {}
    record = DownloadRecord("d1", "org/model", None, None, "running", bytes_done=5, bytes_total=10)
    db.save_download(record)
    record.state, record.bytes_done = "done", 10
    db.save_download(record)
    [stored] = db.downloads()
    assert (stored.state, stored.bytes_done, stored.created_at > 0) == ("done", 10, True)


async def test_an_unusable_state_dir_is_a_config_error_that_names_the_key(tmp_path: Path) -> None:
    from main_backend.config import ConfigError
    from main_backend.statedb.store import StateStore

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    store = StateStore(blocker)
    with pytest.raises(ConfigError, match=r"hub\.state_dir"):
        await store.open()
    await store.close()
