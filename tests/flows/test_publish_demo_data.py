"""The demo job: the bundled datasets reach main through a branch, with
lineage in the commit and a markdown artifact; a rerun commits nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import lakefs
import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.publish_demo_data import publish_demo_data
from sluice.config import DataConfig, LakeFSConfig, SluiceConfig
from tests.conftest import REPO_ROOT, unique_name


def _config(repository: str) -> SluiceConfig:
    return SluiceConfig(
        lakefs=LakeFSConfig(repository=repository, storage_namespace=f"local://{repository}"),
        data=DataConfig(demo_source=REPO_ROOT / "demo" / "data"),
    )


def _latest_artifact_markdown(key: str) -> str:
    async def read() -> str:
        async with get_client() as client:
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return max(artifacts, key=lambda a: a.created).data

    return asyncio.run(read())


@pytest.mark.usefixtures("prefect_harness")
def test_publish_then_republish(lakefs_env, lakefs_client):
    name = unique_name("demo")
    first = publish_demo_data(config=_config(name))
    assert first.changed
    assert first.paths == ["datasets/eval/raw/demo-eval.jsonl", "datasets/preference/raw/demo-preference.jsonl",
                           "datasets/sft/raw/demo-sft.jsonl"]

    repo = lakefs.Repository(name, client=lakefs_client)
    assert repo.branch("main").head.id == first.commit_id
    merge = repo.commit(first.commit_id).get_commit()
    assert len(merge.parents) == 2  # a merge from the work branch, never a direct write to main
    assert merge.metadata["prefect.flow_run_id"] not in ("", "None")
    assert [b.id for b in repo.branches()] == ["main"]  # the work branch is cleaned up
    bundled = (REPO_ROOT / "demo" / "data" / "sft.jsonl").read_bytes()
    assert repo.ref(first.commit_id).object("datasets/sft/raw/demo-sft.jsonl").reader().read() == bundled

    markdown = _latest_artifact_markdown("publish-demo-data")
    assert first.commit_id[:12] in markdown and first.url in markdown

    second = publish_demo_data(config=_config(name))
    assert (second.changed, second.commit_id) == (False, first.commit_id)
    assert repo.branch("main").head.id == first.commit_id


@pytest.mark.slow
def test_sluice_demo_from_the_command_line(tmp_path):
    """`sluice demo` as a user runs it: the embedded server starts, the data
    is committed, the commit id is printed, and the server is stopped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKECTL_", "PREFECT_API"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    data_dir = tmp_path / "lakefs"
    command = [sys.executable, "-m", "sluice", "demo", f"lakefs.embedded_data_dir={data_dir}",
               "lakefs.embedded_port=0"]
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    commit_line = next(line for line in first.stdout.splitlines() if line.startswith("main commit"))
    commit_id = commit_line.split(":", 1)[1].strip()
    assert len(commit_id) == 64
    assert (data_dir / "metadata.sqlite3").exists() and (data_dir / "credentials.json").exists()
    assert oct((data_dir / "credentials.json").stat().st_mode)[-3:] == "600"

    again = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert commit_line in again.stdout  # persisted, and nothing new to commit
