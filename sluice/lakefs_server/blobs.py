"""Content-addressed object storage on local disk.

An object's bytes live at ``objects/<sha256[:2]>/<sha256[2:]>`` under the data
directory, whatever its lakeFS path: lakeFS paths are only keys in the
metadata store, so a path such as ``../../etc/passwd`` can never name a file
outside the data directory. Uploads stream into ``tmp/`` and are renamed into
place once complete, so a crash leaves at worst an orphan temp file, which is
removed at the next start.

Before an upload is acknowledged (and so before the metadata that points at
it commits), the bytes and the rename are on disk: the file is fsynced, then
its directory (and the directory above, when the rename created a new one).
Without that, a power loss could leave a commit that points at bytes that
never reached the disk. Everything here is readable by its owner only.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

_ADDRESS = re.compile(r"^[0-9a-f]{64}$")
OWNER_ONLY_DIR = 0o700


@dataclass(frozen=True)
class StoredBlob:
    address: str  # sha256 hex: where the bytes are
    checksum: str  # md5 hex: what lakeFS reports (its local blockstore's ETag)
    size: int


class BlobWriter:
    """Accepts an upload chunk by chunk, hashing as it goes."""

    def __init__(self, store: BlobStore):
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._file = os.fdopen(fd, "wb")
        self._tmp_path = Path(name)
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5()
        self._size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._sha256.update(chunk)
        self._md5.update(chunk)
        self._size += len(chunk)

    def finish(self) -> StoredBlob:
        address = self._sha256.hexdigest()
        final = self._store.path_of(address)
        if final.exists():
            self._file.close()
            self._tmp_path.unlink()  # same bytes already stored (and synced when they were)
        else:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if make_owner_only_dir(final.parent):
                fsync_directory(final.parent.parent)
            os.replace(self._tmp_path, final)
            fsync_directory(final.parent)
        return StoredBlob(address=address, checksum=self._md5.hexdigest(), size=self._size)

    def abort(self) -> None:
        self._file.close()
        self._tmp_path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path):
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        root.mkdir(mode=OWNER_ONLY_DIR, parents=True, exist_ok=True)  # a data dir given to us stays as it is
        for folder in (self.objects_dir, self.tmp_dir):
            if make_owner_only_dir(folder):
                fsync_directory(root)
            elif folder.stat().st_mode & 0o077:
                folder.chmod(OWNER_ONLY_DIR)  # made by an older version: ours, so close it
        for orphan in self.tmp_dir.glob("upload-*"):  # left by a crash mid-upload
            orphan.unlink(missing_ok=True)

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def path_of(self, address: str) -> Path:
        if not _ADDRESS.match(address):  # only ever our own sha256 names
            raise ValueError(f"not a blob address: {address!r}")
        return self.objects_dir / address[:2] / address[2:]


def make_owner_only_dir(path: Path) -> bool:
    """Create a directory 0700 (created so, not chmodded later; an existing one
    is left as it is). Returns whether it was created."""
    try:
        path.mkdir(mode=OWNER_ONLY_DIR)
    except FileExistsError:
        return False
    return True


def fsync_directory(path: Path) -> None:
    """Make the names in a directory (a rename, a new entry) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
