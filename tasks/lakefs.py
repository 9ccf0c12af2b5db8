"""lakeFS as Prefect tasks, over the official ``lakefs`` SDK only.

The endpoint and credentials come from the standard variables
(``LAKECTL_SERVER_ENDPOINT_URL``, ``LAKECTL_CREDENTIALS_ACCESS_KEY_ID``,
``LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY``), so these tasks run unchanged
against real lakeFS and against the embedded server.

Retries: only idempotent calls are retried, and only when lakeFS could not be
reached — a 404 or a conflict will not change by asking again. Commits and
merges are never retried. Each task returns a small typed record (ids, paths,
links), never data; :func:`read_dataframe` is a plain helper for the tasks
that need the data itself, and it accepts only exact commit ids.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

if TYPE_CHECKING:
    import lakefs
    import pandas as pd

COMMIT_ID = re.compile(r"^[0-9a-f]{64}$")
_RETRY = {"retries": 3, "retry_delay_seconds": [1, 2, 4]}


class LakeFSError(RuntimeError):
    """lakeFS answered, and said no."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class LakeFSUnavailable(LakeFSError):
    """lakeFS could not be reached (worth retrying)."""


def _retry_if_unreachable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only when lakeFS was unreachable."""
    try:
        state.result()
    except LakeFSUnavailable:
        return True
    except Exception:  # any other failure is final: classify, do not retry
        return False
    return False


IDEMPOTENT = {**_RETRY, "retry_condition_fn": _retry_if_unreachable, "cache_policy": NO_CACHE}
NOT_RETRIED = {"cache_policy": NO_CACHE}


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


class ObjectRef(BaseModel):
    repository: str
    ref: str
    path: str
    size_bytes: int
    checksum: str


class Change(BaseModel):
    type: str  # added | removed | changed | conflict | prefix_changed
    path: str
    size_bytes: int | None = None


class RepositoryRef(BaseModel):
    repository: str
    default_branch: str
    storage_namespace: str
    head_commit_id: str


class LocalDataset(BaseModel):
    repository: str
    commit_id: str
    path: str
    local_path: str
    size_bytes: int


# ------------------------------------------------------------------ plumbing


def endpoint_url() -> str:
    url = os.environ.get("LAKECTL_SERVER_ENDPOINT_URL")
    if not url:
        raise LakeFSError(
            "LAKECTL_SERVER_ENDPOINT_URL is not set: point it at lakeFS (and set LAKECTL_CREDENTIALS_ACCESS_KEY_ID "
            "and LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY), or run through `sluice`, which starts the embedded server"
        )
    return url.rstrip("/").removesuffix("/api/v1")


def lakefs_client() -> lakefs.Client:
    """An SDK client configured from the standard LAKECTL_* variables."""
    import lakefs

    url = endpoint_url()
    key = os.environ.get("LAKECTL_CREDENTIALS_ACCESS_KEY_ID")
    secret = os.environ.get("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY")
    if not key or not secret:
        raise LakeFSError("LAKECTL_CREDENTIALS_ACCESS_KEY_ID and LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY must be set")
    return lakefs.Client(host=url, username=key, password=secret)


def commit_url(repository: str, commit_id: str) -> str:
    """Where a person looks at a commit (the lakeFS web UI's commit page)."""
    return f"{endpoint_url()}/repositories/{repository}/commits/{commit_id}"


@contextmanager
def lakefs_call(action: str) -> Iterator[None]:
    """Turn SDK and transport errors into one clear message saying what was
    being done, against which server, and what lakeFS answered."""
    import urllib3
    from lakefs.exceptions import ServerException

    try:
        yield
    except ServerException as exc:
        message = exc.body.get("message") if isinstance(exc.body, dict) else None
        raise LakeFSError(
            f"lakeFS refused to {action}: {exc.status_code} {message or exc.reason or ''}".rstrip(),
            status=exc.status_code,
        ) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise LakeFSUnavailable(
            f"could not {action}: lakeFS at {os.environ.get('LAKECTL_SERVER_ENDPOINT_URL')} is not reachable "
            f"({type(exc).__name__}). Is it running? Check LAKECTL_SERVER_ENDPOINT_URL."
        ) from exc


def require_commit_id(ref: str) -> str:
    """Datasets are read at exact commit ids, never at a moving branch."""
    if not COMMIT_ID.match(ref):
        raise ValueError(
            f"{ref!r} is not a commit id: read datasets at an exact commit (resolve the branch or tag first with "
            "resolve_commit)"
        )
    return ref


def _commit_ref(repository: str, commit: Any, branch: str | None = None) -> CommitRef:
    return CommitRef(repository=repository, commit_id=commit.id, branch=branch, message=commit.message,
                     url=commit_url(repository, commit.id))


# ------------------------------------------------------------------ tasks


@task(name="ensure-repository", **IDEMPOTENT)
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


@task(name="create-branch", **IDEMPOTENT)
def create_branch(repository: str, branch: str, source_ref: str) -> CommitRef:
    """Branch from any ref; an existing branch of that name is kept."""
    import lakefs

    with lakefs_call(f"create branch {branch!r} from {source_ref!r} in {repository!r}"):
        created = lakefs.Repository(repository, client=lakefs_client()).branch(branch).create(
            source_reference=source_ref, exist_ok=True
        )
        return _commit_ref(repository, created.get_commit(), branch)


def _open_source(location: str | Path):  # type: ignore[no-untyped-def]
    """A local path, or an fsspec URL (s3://, lakefs://, …)."""
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        import fsspec

        return fsspec.open(text, "rb").open()
    return Path(text.removeprefix("file://")).open("rb")


@task(name="upload-files", **IDEMPOTENT)
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


@task(name="write-dataframe", **IDEMPOTENT)
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


@task(name="uncommitted-changes", **IDEMPOTENT)
def uncommitted_changes(repository: str, branch: str) -> list[Change]:
    import lakefs

    with lakefs_call(f"list uncommitted changes on {repository}/{branch}"):
        changes = lakefs.Repository(repository, client=lakefs_client()).branch(branch).uncommitted()
        return [Change(type=c.type, path=c.path, size_bytes=c.size_bytes) for c in changes]


@task(name="commit-branch", **NOT_RETRIED)
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
        return _commit_ref(repository, ref.get_commit(), branch)


@task(name="diff-refs", **IDEMPOTENT)
def diff_refs(repository: str, left_ref: str, right_ref: str) -> list[Change]:
    """What merging ``right_ref`` into ``left_ref`` would change (lakeFS's
    three-dot diff)."""
    import lakefs

    with lakefs_call(f"diff {left_ref}...{right_ref} in {repository}"):
        repo = lakefs.Repository(repository, client=lakefs_client())
        return [Change(type=c.type, path=c.path, size_bytes=c.size_bytes)
                for c in repo.ref(left_ref).diff(right_ref)]


@task(name="merge-branch", **NOT_RETRIED)
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
        return _commit_ref(repository, repo.commit(merge_commit_id).get_commit(), destination_branch)


@task(name="delete-branch", **IDEMPOTENT)
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


@task(name="tag-commit", **IDEMPOTENT)
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
        return _commit_ref(repository, repo.commit(commit_id).get_commit())


@task(name="resolve-commit", **IDEMPOTENT)
def resolve_commit(repository: str, ref: str) -> CommitRef:
    """Pin a branch, tag or ref expression to the commit it names now."""
    import lakefs

    with lakefs_call(f"resolve {ref!r} in {repository}"):
        commit = lakefs.Repository(repository, client=lakefs_client()).ref(ref).get_commit()
    return _commit_ref(repository, commit)


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


@task(name="download-dataset", **IDEMPOTENT)
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
