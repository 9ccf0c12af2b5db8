"""The records the metadata store reads and writes: repositories, commits,
object entries, resolved refs, differences, and commits or merges that are
built but not yet applied."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

EMPTY_TREE = hashlib.sha256(b"").hexdigest()
COMMIT_ID_LENGTH = 64


@dataclass(frozen=True)
class ObjectEntry:
    path: str
    address: str  # sha256 of the bytes: where the blob store keeps them
    checksum: str  # md5 hex, lakeFS's ETag
    size_bytes: int
    mtime: int
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, int, str, str]:
        """What makes two entries the same object (lakeFS: size, ETag, user
        metadata, content type); mtime does not count."""
        return (self.checksum, self.size_bytes, self.content_type, json.dumps(self.metadata, sort_keys=True))


@dataclass(frozen=True)
class Commit:
    id: str
    parents: list[str]
    committer: str
    message: str
    creation_ns: int
    tree_id: str
    metadata: dict[str, str]
    generation: int

    @property
    def creation_date(self) -> int:
        return self.creation_ns // 1_000_000_000


@dataclass(frozen=True)
class Repository:
    name: str
    storage_namespace: str
    default_branch: str
    creation_date: int
    read_only: bool


@dataclass(frozen=True)
class ResolvedRef:
    """A ref resolved to a commit. ``branch`` is set when reads must overlay
    that branch's staging area."""

    commit_id: str
    branch: str | None = None


@dataclass(frozen=True)
class Difference:
    type: str  # added | removed | changed | conflict
    path: str
    size_bytes: int | None = None


@dataclass(frozen=True)
class PendingCommit:
    """A commit built but not yet applied to its branch."""

    repo: str
    branch: str
    commit: Commit
    expected_head: str
    staged: tuple[tuple[str, ObjectEntry | None], ...]


@dataclass(frozen=True)
class PendingMerge:
    repo: str
    destination: str
    source_commit_id: str
    commit: Commit
    expected_head: str


def commit_identity(
    committer: str, message: str, tree_id: str, creation_seconds: int, metadata: dict[str, str], parents: list[str]
) -> str:
    """A commit's id is the hash of what it says, as in lakeFS: re-adding an
    identical commit is a no-op."""
    canonical = json.dumps(
        {"committer": committer, "message": message, "tree": tree_id, "date": creation_seconds,
         "metadata": metadata, "parents": parents},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
