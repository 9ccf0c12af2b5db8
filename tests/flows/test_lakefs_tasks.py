"""The lakeFS Prefect tasks, run by a real Prefect API against the embedded
server, configured only through the standard LAKECTL_* variables."""

from __future__ import annotations

import asyncio
import time

import pandas as pd
import pytest
from prefect import flow, get_client

from sluice.core.lake.client import LakeFSError, LakeFSUnavailable
from sluice.core.lake.operations import read_dataframe
from tasks.lakefs import (
    commit_branch,
    create_branch,
    delete_branch,
    diff_refs,
    download_dataset,
    ensure_repository,
    merge_branch,
    resolve_commit,
    tag_commit,
    uncommitted_changes,
    upload_files,
    write_dataframe,
)
from tests.conftest import unique_name

pytestmark = pytest.mark.usefixtures("prefect_harness", "lakefs_env")


def _run_count(state, timeout: float = 30.0) -> int:  # type: ignore[no-untyped-def]
    """The task run's run count once the server has recorded its final state: task run states reach the
    server as events, recorded in the background, so a read right after the call can still be behind."""
    async def read() -> int:
        deadline = time.monotonic() + timeout
        async with get_client() as client:
            while True:
                run = await client.read_task_run(state.state_details.task_run_id)
                if run.state_type == state.type:
                    return run.run_count
                if time.monotonic() > deadline:
                    raise AssertionError(f"task run {run.id} is still {run.state_type} on the server after {timeout} s "
                                         f"(the task ended {state.type}); its run count {run.run_count} is not final")
                await asyncio.sleep(0.1)

    return asyncio.run(read())


def test_write_audit_publish_round_trip(tmp_path):
    name = unique_name("tasks")
    repo = ensure_repository(name, f"local://{name}")
    assert (repo.repository, repo.default_branch) == (name, "main")
    assert ensure_repository(name, f"local://{name}").head_commit_id == repo.head_commit_id  # idempotent

    branch = create_branch(name, "ingest-1", "main")
    assert branch.commit_id == repo.head_commit_id
    local = tmp_path / "rows.jsonl"
    local.write_text('{"a": 1}\n{"a": 2}\n')
    uploaded = upload_files(name, "ingest-1", {"raw/rows.jsonl": str(local)})
    assert [(o.path, o.size_bytes) for o in uploaded] == [("raw/rows.jsonl", local.stat().st_size)]
    frame = pd.DataFrame({"id": [1, 2], "text": ["x", "y"]})
    write_dataframe(name, "ingest-1", "clean/rows.parquet", frame)
    assert {c.path for c in uncommitted_changes(name, "ingest-1")} == {"raw/rows.jsonl", "clean/rows.parquet"}

    commit = commit_branch(name, "ingest-1", "ingest", {"rows": 2, "flow_run": "abc"})
    assert commit.branch == "ingest-1" and commit.url.endswith(f"/repositories/{name}/commits/{commit.commit_id}")
    assert [c.path for c in diff_refs(name, "main", "ingest-1")] == ["clean/rows.parquet", "raw/rows.jsonl"]

    merged = merge_branch(name, "ingest-1", "main", metadata={"contract": "v1"})
    assert resolve_commit(name, "main").commit_id == merged.commit_id
    assert merged.uri("clean/rows.parquet") == f"lakefs://{name}/{merged.commit_id}/clean/rows.parquet"
    assert read_dataframe(name, merged.commit_id, "clean/rows.parquet").equals(frame)
    assert read_dataframe(name, merged.commit_id, "raw/rows.jsonl")["a"].tolist() == [1, 2]

    assert delete_branch(name, "ingest-1") is True
    assert delete_branch(name, "ingest-1") is False  # already gone: idempotent


def test_datasets_are_read_only_at_exact_commit_ids(tmp_path):
    name = unique_name("tasks")
    ensure_repository(name, f"local://{name}")
    write_dataframe(name, "main", "t.parquet", pd.DataFrame({"x": [1]}))
    commit = commit_branch(name, "main", "t")
    with pytest.raises(ValueError, match="not a commit id"):
        read_dataframe(name, "main", "t.parquet")
    with pytest.raises(ValueError, match="not a commit id"):
        download_dataset(name, "main", "t.parquet", tmp_path)

    first = download_dataset(name, commit.commit_id, "t.parquet", tmp_path)
    assert pd.read_parquet(first.local_path)["x"].tolist() == [1]
    second = download_dataset(name, commit.commit_id, "t.parquet", tmp_path)
    assert second.local_path == first.local_path  # a commit never changes: cached


def test_tags_do_not_move():
    name = unique_name("tasks")
    ensure_repository(name, f"local://{name}")
    first = commit_branch(name, "main", "one", allow_empty=True)
    second = commit_branch(name, "main", "two", allow_empty=True)
    assert tag_commit(name, "dataset-v1", first.commit_id).commit_id == first.commit_id
    assert tag_commit(name, "dataset-v1", first.commit_id).commit_id == first.commit_id  # same: fine
    with pytest.raises(LakeFSError, match="already names commit"):
        tag_commit(name, "dataset-v1", second.commit_id)


def test_errors_say_what_was_being_done_and_what_lakefs_answered():
    name = unique_name("tasks")
    ensure_repository(name, f"local://{name}")
    with pytest.raises(LakeFSError) as conflict:
        commit_branch(name, "main", "nothing staged")
    assert str(conflict.value) == f"lakeFS refused to commit on {name}/main: 400 commit: no changes"
    with pytest.raises(LakeFSError, match="404"):
        merge_branch(name, "no-such-branch", "main")


def test_unreachable_lakefs_is_retried_then_reported(monkeypatch):
    monkeypatch.setenv("LAKECTL_SERVER_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    quick = ensure_repository.with_options(retry_delay_seconds=0)
    state = quick("unreachable", "local://unreachable", return_state=True)
    assert state.is_failed()
    with pytest.raises(LakeFSUnavailable) as err:
        state.result()
    assert "lakeFS at http://127.0.0.1:9 is not reachable" in str(err.value)
    assert "LAKECTL_SERVER_ENDPOINT_URL" in str(err.value)
    assert _run_count(state) == 4  # the first try and three retries


def test_a_refusal_is_not_retried():
    state = resolve_commit.with_options(retry_delay_seconds=0)("no-such-repo", "main", return_state=True)
    assert state.is_failed()
    assert _run_count(state) == 1


def test_missing_endpoint_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("LAKECTL_SERVER_ENDPOINT_URL")
    with pytest.raises(LakeFSError, match="LAKECTL_SERVER_ENDPOINT_URL is not set"):
        resolve_commit.fn("any", "main")


def test_tasks_compose_in_a_flow():
    name = unique_name("tasks")

    @flow
    def branch_commit_merge() -> str:
        ensure_repository(name, f"local://{name}")
        create_branch(name, "work", "main")
        write_dataframe(name, "work", "x.parquet", pd.DataFrame({"x": [1, 2, 3]}))
        commit_branch(name, "work", "work")
        return merge_branch(name, "work", "main").commit_id

    merged = branch_commit_merge()
    assert read_dataframe(name, merged, "x.parquet")["x"].sum() == 6
