"""Owner-only files and folders, private from the moment they exist.

Writing a file and chmodding it afterwards leaves it readable by everyone in
between (at the umask's mode); these helpers create files with ``os.open``
and mode 0600, and folders with mode 0700, so no other user ever gets a look
at a secret, a ledger or a prompt.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path, *, tighten_existing: bool = False) -> Path:
    """Create ``path`` and any missing parents with mode 0700. An existing folder is left as it is, unless
    ``tighten_existing`` (a folder that is ours alone, such as the stack's state folder) — then it becomes 0700."""
    path = Path(path)
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)  # the umask can only take bits away from 0700
    if tighten_existing and path.stat().st_mode & 0o777 != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Replace ``path`` atomically with ``data``, owner-only: a temporary file created 0600 beside it is
    written, flushed to disk and renamed over it, so readers see the old content or the new, and never a
    file anyone else may read."""
    path = Path(path)
    content = data.encode() if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def create_private(path: Path) -> Path:
    """Make sure ``path`` exists as an owner-only file (created empty, 0600, when missing; an existing file
    written by an older version is tightened to 0600). For files another library then opens, e.g. SQLite's."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path
