"""A hub killed in the middle of writing a binding leaves the state database as it was before."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from main_backend.statedb.database import StateDatabase
from tests.support.processes import REPO

# Binds text -> remote, but is killed (SIGKILL) as the second statement of the write (the
# history entry) starts, after the binding row itself was written.
WRITER = """
import os, signal, sys
from pathlib import Path
from main_backend.statedb.database import StateDatabase
db = StateDatabase(Path(sys.argv[1]))
db.open()
def die_on_history(sql):
    if sql.startswith("INSERT INTO switch_history"):
        os.kill(os.getpid(), signal.SIGKILL)
db.conn.set_trace_callback(die_on_history)
db.set_binding("text", "remote", "vlm", "crash test")
"""


def test_a_write_cut_by_a_crash_leaves_no_half_of_it(tmp_path: Path) -> None:
    db = StateDatabase(tmp_path)
    db.open()
    db.set_binding("text", "vlm", None, "before")
    db.close()
    proc = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO, timeout=60)
    assert proc.returncode == -9  # killed mid-write
    again = StateDatabase(tmp_path)
    again.open()
    assert again.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert again.bindings() == {"text": "vlm"}
    assert [r.actor for r in again.switch_history()] == ["before"]
    again.set_binding("text", "remote", "vlm", "after")  # the file is writable again: no lock left behind
    assert again.bindings() == {"text": "remote"}
    assert isinstance(again.conn, sqlite3.Connection)
