"""One SQLite file in WAL mode, shared by the call store and the webhook outbox.

Writes are small (a call record, a turn, an event) and run on the caller's thread under one
lock. With WAL and synchronous=NORMAL a commit does not fsync (only checkpoints do), so it
takes well under a millisecond, and a committed transaction survives the process being killed
(`kill -9`); only a power cut can lose the last commits. Readers (the CLI, the HTTP API) never
block the writer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Database:
    """A connection to the store's file, usable from any thread (one statement at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; transaction() says where they are.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._conn.row_factory = sqlite3.Row
        _into_wal(self._conn, deadline=time.monotonic() + 10)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.RLock()

    def ensure(self, schema: str) -> None:
        """Create the tables and indexes of `schema` (CREATE ... IF NOT EXISTS statements)."""
        with self._lock:
            self._conn.executescript(schema)

    def add_columns(self, table: str, columns: dict[str, str]) -> None:
        """Add the columns an older file lacks (name → type and default)."""
        with self._lock:
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns.items():
                if name not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all (BEGIN IMMEDIATE: no other
        writer can slip in between a read and the write that depends on it)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _into_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Switch the file to WAL. SQLite does not wait (no busy handler) when another process is
    making the same switch on a new file (two cluster workers starting at once), so retry."""
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
