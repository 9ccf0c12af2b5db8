"""Durability and file modes of the embedded server's data (issue 13, items 3
and 12): an acknowledged upload has its bytes and its name on disk (the blob
file and its directory fsynced), SQLite syncs every commit (synchronous=FULL),
and the database, its -wal/-shm files and the blob store are owner-only from
the moment they are created."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import lakefs
import pytest

from tests.faults.in_process_server import serve_in_process

SQLITE_SYNCHRONOUS_FULL = 2


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(device, inode) of everything passed to ``os.fsync`` from now on."""
    seen: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        seen.append((info.st_dev, info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return seen


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which files are world-readable unless created otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def test_an_acknowledged_upload_is_fsynced_with_its_directory(tmp_path, fsynced):
    data_dir = tmp_path / "lakefs"
    with serve_in_process(data_dir) as (client, state):
        main = lakefs.Repository("durable", client=client).create(storage_namespace="local://durable").branch("main")
        fsynced.clear()
        main.object("a.bin").upload(data=os.urandom(1024))  # new bytes: a new objects/xx/ folder too
        synced_by_upload = list(fsynced)
        main.commit("durable")
        synchronous = state.store.db.execute("PRAGMA synchronous").fetchone()[0]

    (blob,) = [p for p in (data_dir / "objects").rglob("*") if p.is_file()]
    assert _identity(blob) in synced_by_upload, "the blob's bytes were not fsynced before the upload answered"
    assert _identity(blob.parent) in synced_by_upload, "the rename into objects/xx/ was not fsynced"
    assert _identity(blob.parent.parent) in synced_by_upload, "the new objects/xx/ folder was not fsynced"
    assert synchronous == SQLITE_SYNCHRONOUS_FULL  # before the fix: 1 (NORMAL)


def test_database_and_blob_store_are_owner_only_from_the_start(tmp_path, umask_022):
    data_dir = tmp_path / "lakefs"
    with serve_in_process(data_dir) as (client, _):
        main = lakefs.Repository("modes", client=client).create(storage_namespace="local://modes").branch("main")
        main.object("a.bin").upload(data=os.urandom(64))
        main.commit("modes")
        database = data_dir / "metadata.sqlite3"
        files = [database, database.with_name("metadata.sqlite3-wal"), database.with_name("metadata.sqlite3-shm")]
        files += [p for p in (data_dir / "objects").rglob("*") if p.is_file()]
        folders = [data_dir / "objects", data_dir / "tmp", *(p for p in (data_dir / "objects").iterdir())]
        modes = {str(p.relative_to(data_dir)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files + folders}

    expected = {str(p.relative_to(data_dir)): oct(0o600) for p in files}
    expected |= {str(p.relative_to(data_dir)): oct(0o700) for p in folders}
    assert modes == expected
