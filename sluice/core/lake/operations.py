"""lakeFS operations over the official SDK: repositories, branches, uploads,
commits, diffs, merges, tags, and reads at exact commit ids.

Each returns a small record (ids, paths, links); :func:`read_dataframe` and
:func:`read_column_under` are the readers for code that needs the data
itself, and they accept only exact commit ids. Whether a call may be retried
is the task layer's decision (``tasks/lakefs.py``): only the idempotent ones
are, and only when lakeFS was unreachable.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.core.lake.client import LakeFSError, lakefs_call, lakefs_client, require_commit_id
from sluice.core.lake.records import Change, CommitRef, LocalDataset, ObjectRef, RepositoryRef

if TYPE_CHECKING:
    import pandas as pd


def ensure_repository(repository: str, storage_namespace: str, default_branch: str = "main") -> RepositoryRef:
    """Create the repository unless it exists (an existing one is kept as is)."""
    import lakefs

    with lakefs_call(f"create repository {repository!r}"):
        repo = lakefs.Repository(repository, client=lakefs_client()).create(
            storage_namespace=storage_namespace, default_branch=default_branch, exist_ok=True
        )
        props = repo.properties
        head = repo.branch(props.default_branch).head.id
    return RepositoryRef(repository=repository, default_branch=props.default_branch,
                         storage_namespace=props.storage_namespace, head_commit_id=head)


def create_branch(repository: str, branch: str, source_ref: str) -> CommitRef:
    """Branch from any ref; an existing branch of that name is kept."""
    import lakefs

    with lakefs_call(f"create branch {branch!r} from {source_ref!r} in {repository!r}"):
        created = lakefs.Repository(repository, client=lakefs_client()).branch(branch).create(
            source_reference=source_ref, exist_ok=True
        )
        return CommitRef.of(repository, created.get_commit(), branch)


def _open_source(location: str | Path):  # type: ignore[no-untyped-def]
    """A local path, or an fsspec URL (s3://, lakefs://, …)."""
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        import fsspec

        return fsspec.open(text, "rb").open()
    return Path(text.removeprefix("file://")).open("rb")


def upload_files(repository: str, branch: str, files: Mapping[str, str | Path]) -> list[ObjectRef]:
    """Upload files to ``{lakefs path: local path or fsspec URL}`` on a branch
    (staged, not committed), streamed. Uploading the same bytes again changes
    nothing."""
    import lakefs

    branch_ = lakefs.Repository(repository, client=lakefs_client()).branch(branch)
    uploaded = []
    for lakefs_path, location in files.items():
        obj = branch_.object(lakefs_path)
        with lakefs_call(f"upload {location} to {repository}/{branch}/{lakefs_path}"):
            with _open_source(location) as source, obj.writer(mode="wb") as sink:
                shutil.copyfileobj(source, sink, 8 << 20)  # streamed: the SDK spools to disk past 32 MiB
            stats = obj.stat()
        uploaded.append(ObjectRef(repository=repository, ref=branch, path=lakefs_path,
                                  size_bytes=stats.size_bytes or 0, checksum=stats.checksum))
    return uploaded


def write_dataframe(repository: str, branch: str, path: str, frame: pd.DataFrame) -> ObjectRef:
    """Write a DataFrame as parquet to a branch (staged, not committed)."""
    import lakefs

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    with lakefs_call(f"write {repository}/{branch}/{path}"):
        obj = lakefs.Repository(repository, client=lakefs_client()).branch(branch).object(path)
        stats = obj.upload(data=buffer.getvalue(), content_type="application/vnd.apache.parquet").stat()
    return ObjectRef(repository=repository, ref=branch, path=path, size_bytes=stats.size_bytes or 0,
                     checksum=stats.checksum)


def uncommitted_changes(repository: str, branch: str) -> list[Change]:
    import lakefs

    with lakefs_call(f"list uncommitted changes on {repository}/{branch}"):
        changes = lakefs.Repository(repository, client=lakefs_client()).branch(branch).uncommitted()
        return [Change(type=c.type, path=c.path, size_bytes=c.size_bytes) for c in changes]


def commit_branch(
    repository: str, branch: str, message: str, metadata: Mapping[str, str] | None = None,
    allow_empty: bool = False,
) -> CommitRef:
    """Commit what is staged on a branch, with string metadata."""
    import lakefs

    with lakefs_call(f"commit on {repository}/{branch}"):
        ref = lakefs.Repository(repository, client=lakefs_client()).branch(branch).commit(
            message=message, metadata={str(k): str(v) for k, v in (metadata or {}).items()},
            allow_empty=allow_empty,
        )
        return CommitRef.of(repository, ref.get_commit(), branch)


def diff_refs(repository: str, left_ref: str, right_ref: str) -> list[Change]:
    """What merging ``right_ref`` into ``left_ref`` would change (lakeFS's
    three-dot diff)."""
    import lakefs

    with lakefs_call(f"diff {left_ref}...{right_ref} in {repository}"):
        repo = lakefs.Repository(repository, client=lakefs_client())
        return [Change(type=c.type, path=c.path, size_bytes=c.size_bytes)
                for c in repo.ref(left_ref).diff(right_ref)]


def merge_branch(
    repository: str, source_ref: str, destination_branch: str, message: str | None = None,
    metadata: Mapping[str, str] | None = None, strategy: str | None = None,
) -> CommitRef:
    """Merge a ref into a branch; a conflict fails (``strategy`` may be
    ``dest-wins`` or ``source-wins``)."""
    import lakefs

    with lakefs_call(f"merge {source_ref!r} into {destination_branch!r} in {repository}"):
        repo = lakefs.Repository(repository, client=lakefs_client())
        kwargs: dict[str, Any] = {"metadata": {str(k): str(v) for k, v in (metadata or {}).items()}}
        if message:
            kwargs["message"] = message
        if strategy:
            kwargs["strategy"] = strategy
        merge_commit_id = repo.ref(source_ref).merge_into(repo.branch(destination_branch), **kwargs)
        return CommitRef.of(repository, repo.commit(merge_commit_id).get_commit(), destination_branch)


def delete_branch(repository: str, branch: str) -> bool:
    """Delete a branch; ``False`` if it was already gone."""
    import lakefs
    from lakefs.exceptions import NotFoundException

    try:
        with lakefs_call(f"delete branch {repository}/{branch}"):
            lakefs.Repository(repository, client=lakefs_client()).branch(branch).delete()
    except LakeFSError as exc:
        if isinstance(exc.__cause__, NotFoundException):
            return False
        raise
    return True


def tag_commit(repository: str, tag: str, commit_id: str) -> CommitRef:
    """Tag a commit. Re-tagging the same commit is a no-op; a tag that already
    names another commit is an error (tags do not move)."""
    import lakefs
    from lakefs.exceptions import ConflictException

    repo = lakefs.Repository(repository, client=lakefs_client())
    try:
        with lakefs_call(f"tag {commit_id} as {tag!r} in {repository}"):
            repo.tag(tag).create(commit_id)
    except LakeFSError as exc:
        if not isinstance(exc.__cause__, ConflictException):
            raise
        with lakefs_call(f"read tag {tag!r} in {repository}"):
            existing = repo.tag(tag).get_commit().id
        if existing != commit_id:
            raise LakeFSError(f"tag {tag!r} in {repository} already names commit {existing}, not {commit_id}",
                              409) from exc
    with lakefs_call(f"read commit {commit_id} in {repository}"):
        return CommitRef.of(repository, repo.commit(commit_id).get_commit())


def resolve_commit(repository: str, ref: str) -> CommitRef:
    """Pin a branch, tag or ref expression to the commit it names now."""
    import lakefs

    with lakefs_call(f"resolve {ref!r} in {repository}"):
        commit = lakefs.Repository(repository, client=lakefs_client()).ref(ref).get_commit()
    return CommitRef.of(repository, commit)


def read_dataframe(repository: str, commit_id: str, path: str) -> pd.DataFrame:
    """Read a parquet, JSONL or CSV object at an exact commit id."""
    import lakefs
    import pandas as pd

    require_commit_id(commit_id)
    with lakefs_call(f"read {repository}/{commit_id}/{path}"):
        data = lakefs.Repository(repository, client=lakefs_client()).ref(commit_id).object(path).reader(
            mode="rb").read()
    if path.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    if path.endswith((".jsonl", ".ndjson")):
        return pd.read_json(io.BytesIO(data), lines=True)
    if path.endswith(".csv"):
        return pd.read_csv(io.BytesIO(data))
    raise ValueError(f"{path}: unsupported dataset format (expected .parquet, .jsonl or .csv)")


def read_column_under(repository: str, commit_id: str, prefix: str, column: str) -> list[str]:
    """One column of every Parquet file under ``prefix`` at an exact commit
    (e.g. the ids of a kind's published rows)."""
    import lakefs
    import pyarrow.parquet as pq

    require_commit_id(commit_id)
    ref = lakefs.Repository(repository, client=lakefs_client()).ref(commit_id)
    values: list[str] = []
    with lakefs_call(f"read {column} under {repository}/{commit_id}/{prefix}"):
        for obj in ref.objects(prefix=prefix):
            if not obj.path.endswith(".parquet"):
                continue
            data = ref.object(obj.path).reader(mode="rb").read()
            table = pq.read_table(io.BytesIO(data), columns=[column])
            values.extend(v for v in table[column].to_pylist() if v is not None)
    return values


def download_dataset(repository: str, commit_id: str, path: str, cache_dir: str | Path) -> LocalDataset:
    """Download an object at an exact commit into a local cache; a commit's
    object never changes, so a cached copy is reused."""
    import lakefs

    require_commit_id(commit_id)
    local = Path(cache_dir) / repository / commit_id / path
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(local.name + ".partial")
        with lakefs_call(f"download {repository}/{commit_id}/{path}"):
            obj = lakefs.Repository(repository, client=lakefs_client()).ref(commit_id).object(path)
            with obj.reader(mode="rb") as reader, partial.open("wb") as out:
                while chunk := reader.read(8 << 20):
                    out.write(chunk)
        partial.replace(local)
    return LocalDataset(repository=repository, commit_id=commit_id, path=path, local_path=str(local),
                        size_bytes=local.stat().st_size)
