"""The event bridge's ledger: which events were emitted, and where each watched
branch was last seen (sqlite, durable, owner-only: it names repositories,
branches and commits)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.core.private_files import create_private, private_dir

if TYPE_CHECKING:
    from sluice.shell.event_bridge import BridgeEvent

_CLAIM_EXPIRES_SECONDS = 120.0  # a claim left by a crashed emit is taken over after this


class EmittedLedger:
    """Which events were emitted, and where each watched branch was last seen (sqlite, durable)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        private_dir(self.path.parent)
        # created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database's mode
        create_private(self.path)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS emitted (event_id TEXT PRIMARY KEY, repository TEXT, "
                       "branch TEXT, event TEXT, commit_id TEXT, via TEXT, state TEXT, at REAL)")
            db.execute("CREATE TABLE IF NOT EXISTS watermarks (repository TEXT, branch TEXT, commit_id TEXT, "
                       "PRIMARY KEY (repository, branch))")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    def claim(self, event: BridgeEvent, via: str) -> bool:
        """True when this caller is to emit the event; False when it was emitted (or is being emitted)."""
        now = time.time()
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT state, at FROM emitted WHERE event_id = ?", (str(event.id),)).fetchone()
            if row is not None and (row[0] == "emitted" or now - row[1] < _CLAIM_EXPIRES_SECONDS):
                db.execute("COMMIT")
                return False
            db.execute("INSERT OR REPLACE INTO emitted VALUES (?, ?, ?, ?, ?, ?, 'claimed', ?)",
                       (str(event.id), event.repository, event.branch, event.event, event.commit_id, via, now))
            db.execute("COMMIT")
            return True

    def confirm(self, event: BridgeEvent) -> None:
        with self._lock, self._connect() as db:
            db.execute("UPDATE emitted SET state = 'emitted', at = ? WHERE event_id = ?", (time.time(), str(event.id)))

    def release(self, event: BridgeEvent) -> None:
        """Forget a claim whose emit failed, so a retry or the reconciler emits it."""
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM emitted WHERE event_id = ? AND state = 'claimed'", (str(event.id),))

    def is_emitted(self, event: BridgeEvent) -> bool:
        """Whether the event was emitted and confirmed (a claim alone is not enough)."""
        with self._connect() as db:
            row = db.execute("SELECT state FROM emitted WHERE event_id = ?", (str(event.id),)).fetchone()
        return row is not None and row[0] == "emitted"

    def emitted(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT event_id, repository, branch, event, commit_id, via, state, at FROM emitted "
                              "ORDER BY at").fetchall()
        keys = ("event_id", "repository", "branch", "event", "commit_id", "via", "state", "at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def watermarks(self, repository: str) -> dict[str, str]:
        with self._connect() as db:
            rows = db.execute("SELECT branch, commit_id FROM watermarks WHERE repository = ?", (repository,))
            return dict(rows.fetchall())

    def set_watermark(self, repository: str, branch: str, commit_id: str) -> None:
        with self._lock, self._connect() as db:
            db.execute("INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?)", (repository, branch, commit_id))
