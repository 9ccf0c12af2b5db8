"""What lakeFS operations return: small records (ids, paths, links), never data."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from sluice.core.lake.client import commit_url

ChangeType = Literal["added", "removed", "changed", "conflict", "prefix_changed"]


class CommitRef(BaseModel):
    """A commit in a lakeFS repository, and where to look at it."""

    repository: str
    commit_id: str
    branch: str | None = None
    message: str = ""
    url: str = ""

    def uri(self, path: str = "") -> str:
        """``lakefs://repo/<commit id>/path``: pinned, never a moving branch."""
        return f"lakefs://{self.repository}/{self.commit_id}/{path.lstrip('/')}"

    @classmethod
    def of(cls, repository: str, commit: Any, branch: str | None = None) -> CommitRef:
        """From an SDK commit."""
        return cls(repository=repository, commit_id=commit.id, branch=branch, message=commit.message,
                   url=commit_url(repository, commit.id))


class ObjectRef(BaseModel):
    repository: str
    ref: str
    path: str
    size_bytes: int
    checksum: str


class Change(BaseModel):
    type: ChangeType
    path: str
    size_bytes: int | None = None


class RepositoryRef(BaseModel):
    repository: str
    default_branch: str
    storage_namespace: str
    head_commit_id: str


class LocalDataset(BaseModel):
    """An object of an exact commit, downloaded."""

    repository: str
    commit_id: str
    path: str
    local_path: str
    size_bytes: int
