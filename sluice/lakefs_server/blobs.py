"""Content-addressed object storage on local disk.

An object's bytes live at ``objects/<sha256[:2]>/<sha256[2:]>`` under the data
directory, whatever its lakeFS path: lakeFS paths are only keys in the
metadata store, so a path such as ``../../etc/passwd`` can never name a file
outside the data directory. Uploads stream into ``tmp/`` and are renamed into
place once complete, so a crash leaves at worst an orphan temp file, which is
removed at the next start.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

_ADDRESS = re.compile(r"^[0-9a-f]{64}$")


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
        self._file.close()
        address = self._sha256.hexdigest()
        final = self._store.path_of(address)
        if final.exists():
            self._tmp_path.unlink()  # same bytes already stored
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp_path, final)
        return StoredBlob(address=address, checksum=self._md5.hexdigest(), size=self._size)

    def abort(self) -> None:
        self._file.close()
        self._tmp_path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path):
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for orphan in self.tmp_dir.glob("upload-*"):  # left by a crash mid-upload
            orphan.unlink(missing_ok=True)

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def path_of(self, address: str) -> Path:
        if not _ADDRESS.match(address):  # only ever our own sha256 names
            raise ValueError(f"not a blob address: {address!r}")
        return self.objects_dir / address[:2] / address[2:]
