"""lakeFS as Prefect tasks: the operations of ``sluice.core.lake`` with their
retry policy.

Only idempotent calls are retried, and only when lakeFS could not be reached
(``LakeFSUnavailable``): a 404 or a conflict will not change by asking again.
Commits and merges are never retried.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from sluice.core.lake import operations as lake
from sluice.core.lake import published
from sluice.core.lake.client import LakeFSUnavailable
from sluice.core.lake.published import PublishedData
from tasks import UNCACHED


def _retry_if_unreachable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only when lakeFS was unreachable."""
    try:
        state.result()
    except LakeFSUnavailable:
        return True
    except Exception:  # any other failure is final: classify, do not retry
        return False
    return False


IDEMPOTENT = {"retries": 3, "retry_delay_seconds": [1, 2, 4], "retry_condition_fn": _retry_if_unreachable,
              **UNCACHED}

ensure_repository = task(lake.ensure_repository, name="ensure-repository", **IDEMPOTENT)
create_branch = task(lake.create_branch, name="create-branch", **IDEMPOTENT)
upload_files = task(lake.upload_files, name="upload-files", **IDEMPOTENT)
write_dataframe = task(lake.write_dataframe, name="write-dataframe", **IDEMPOTENT)
uncommitted_changes = task(lake.uncommitted_changes, name="uncommitted-changes", **IDEMPOTENT)
commit_branch = task(lake.commit_branch, name="commit-branch", **UNCACHED)
diff_refs = task(lake.diff_refs, name="diff-refs", **IDEMPOTENT)
merge_branch = task(lake.merge_branch, name="merge-branch", **UNCACHED)
delete_branch = task(lake.delete_branch, name="delete-branch", **IDEMPOTENT)
tag_commit = task(lake.tag_commit, name="tag-commit", **IDEMPOTENT)
resolve_commit = task(lake.resolve_commit, name="resolve-commit", **IDEMPOTENT)
download_dataset = task(lake.download_dataset, name="download-dataset", **IDEMPOTENT)
published_files = task(published.published_files, name="list-published-files", **IDEMPOTENT)
read_published_values = task(published.published_values, name="read-published-values", **IDEMPOTENT)


@task(name="pin-published-data", **IDEMPOTENT)
def pin_published_data(repository: str, data_ref: str, kind: str, datasets_prefix: str,
                       cache_dir: str) -> PublishedData:
    """The kind's published files at ``data_ref``'s commit, downloaded (see ``pin_published_data``)."""
    return published.pin_published_data(repository, data_ref, kind, datasets_prefix, cache_dir, get_run_logger())
