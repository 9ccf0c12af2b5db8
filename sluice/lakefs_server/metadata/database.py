"""The metadata store's SQLite database: its schema, how it is opened, and
its transactions.

Every change is one ``BEGIN IMMEDIATE`` transaction, so a crash leaves the
database before or after it, never half-way; with ``synchronous=FULL`` a
transaction that answered is on disk, so a power loss cannot take it back.
The file holds repository content (paths, metadata, messages): it is created
readable by its owner only, and SQLite gives its ``-wal`` and ``-shm`` files
the same mode.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .records import EMPTY_TREE

SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (
    name TEXT PRIMARY KEY,
    storage_namespace TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    creation_date INTEGER NOT NULL,
    read_only INTEGER NOT NULL DEFAULT 0
);
-- lakeFS marks a storage namespace as used forever (its _lakefs/dummy object)
CREATE TABLE IF NOT EXISTS used_namespaces (storage_namespace TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS commits (
    repo TEXT NOT NULL,
    id TEXT NOT NULL,
    parents TEXT NOT NULL,
    committer TEXT NOT NULL,
    message TEXT NOT NULL,
    creation_ns INTEGER NOT NULL,
    tree_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (repo, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS branches (
    repo TEXT NOT NULL,
    name TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repo, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL,
    id TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    PRIMARY KEY (repo, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trees (tree_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_entries (
    tree_id TEXT NOT NULL,
    path TEXT NOT NULL,
    address TEXT NOT NULL,
    checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (tree_id, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staging (
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    path TEXT NOT NULL,
    address TEXT,            -- NULL: a tombstone (deleted since the last commit)
    checksum TEXT,
    size INTEGER,
    mtime INTEGER,
    content_type TEXT,
    metadata TEXT,
    PRIMARY KEY (repo, branch, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS action_runs (
    repo TEXT NOT NULL,
    run_id TEXT NOT NULL,
    branch TEXT NOT NULL,
    event_type TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    status TEXT NOT NULL,
    hooks TEXT NOT NULL,
    PRIMARY KEY (repo, run_id)
) WITHOUT ROWID;
-- commits and merges built but not applied yet (their pre-hooks run); see prepared.py
CREATE TABLE IF NOT EXISTS prepared_commits (
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    expected_head TEXT NOT NULL,
    kind TEXT NOT NULL,      -- commit | merge
    PRIMARY KEY (repo, branch, commit_id)
) WITHOUT ROWID;
"""

OWNER_ONLY_FILE = 0o600
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def open_database(path: Path) -> sqlite3.Connection:
    _create_owner_only(path)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit syncs the WAL, so an answered write survives a power
    # loss, not only a process crash (NORMAL's promise).
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO trees(tree_id) VALUES (?)", (EMPTY_TREE,))
    return db


def _create_owner_only(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it (SQLite would
    create it 0644, and its -wal/-shm files copy the database's mode)."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, OWNER_ONLY_FILE))
    except FileExistsError:
        _tighten_existing(path)


def _tighten_existing(path: Path) -> None:
    """A data directory from an older version may hold 0644 files: make them
    owner-only too."""
    for suffix in _SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists() and companion.stat().st_mode & 0o077:
            companion.chmod(OWNER_ONLY_FILE)


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
