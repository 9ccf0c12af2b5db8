"""Published data: every clean Parquet file of one dataset kind at one data
commit. A training reads it, and so does the evaluation of the model it made:
both are pinned to the same commit id, never to a moving branch."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from sluice.core.errors import ExplainedError
from sluice.core.lake.client import lakefs_call, lakefs_client
from sluice.core.lake.operations import download_dataset, read_column_under, resolve_commit

log = logging.getLogger(__name__)


class PublishedDataMissing(ExplainedError, RuntimeError):
    """Nothing of the kind is published at the ref: ingest it first."""


class PublishedData(BaseModel):
    """Every published file of one dataset kind at one data commit, downloaded."""

    repository: str
    data_commit: str
    kind: str
    prefix: str  # the kind's published folder: datasets/<kind>/clean/
    paths: list[str]  # lakeFS paths under the prefix
    local_files: list[str]
    rows: int

    @property
    def uri(self) -> str:
        """``lakefs://repo/<data commit>/datasets/<kind>/clean/``."""
        return f"lakefs://{self.repository}/{self.data_commit}/{self.prefix}"


def published_prefix(datasets_prefix: str, kind: str) -> str:
    return f"{datasets_prefix}/{kind}/clean/"


def published_files(repository: str, commit_id: str, kind: str, datasets_prefix: str) -> list[str]:
    """The published (clean) parquet files of a kind at a commit."""
    import lakefs

    prefix = published_prefix(datasets_prefix, kind)
    with lakefs_call(f"list {prefix} at {repository}/{commit_id}"):
        return sorted(o.path for o in lakefs.Repository(repository, client=lakefs_client()).ref(commit_id)
                      .objects(prefix=prefix) if o.path.endswith(".parquet"))


def pin_published_data(repository: str, data_ref: str, kind: str, datasets_prefix: str, cache_dir: str,
                       logger: logging.Logger | logging.LoggerAdapter = log) -> PublishedData:
    """Resolve ``data_ref`` to its commit id, list the kind's published files
    there, and download them (a commit's files never change: cached)."""
    import pyarrow.parquet as pq

    commit = resolve_commit(repository, data_ref)
    prefix = published_prefix(datasets_prefix, kind)
    paths = published_files(repository, commit.commit_id, kind, datasets_prefix)
    if not paths:
        raise PublishedDataMissing(f"no published {kind} data at {repository}/{commit.commit_id} ({prefix}): "
                                   f"ingest some first (sluice ingest FILE --kind {kind})")
    local = [download_dataset(repository, commit.commit_id, path, cache_dir).local_path for path in paths]
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in local)
    logger.info("%d %s rows in %d file(s) at %s", rows, kind, len(paths), commit.commit_id)
    return PublishedData(repository=repository, data_commit=commit.commit_id, kind=kind, prefix=prefix, paths=paths,
                         local_files=local, rows=rows)


def published_values(repository: str, commit_id: str, datasets_prefix: str, kinds: list[str],
                     column: str) -> set[str]:
    """One column of the published rows of ``kinds`` at a commit (e.g. the ids already in main)."""
    values: set[str] = set()
    for kind in kinds:
        values.update(read_column_under(repository, commit_id, published_prefix(datasets_prefix, kind), column))
    return values
