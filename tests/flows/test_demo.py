"""The demo job: the bundled datasets go through write-audit-publish into
main; a rerun publishes nothing new; `sluice demo` works from the shell."""

from __future__ import annotations

import os
import subprocess
import sys

import lakefs
import pytest

from flows.demo import ingest_demo_data
from sluice.core.config import DataConfig, LakeFSConfig, SluiceConfig
from tests.conftest import REPO_ROOT, unique_name


def demo_config(repository: str, tmp_path) -> SluiceConfig:  # type: ignore[no-untyped-def]
    return SluiceConfig(
        lakefs=LakeFSConfig(repository=repository, storage_namespace=f"local://{repository}"),
        data=DataConfig(demo_source=REPO_ROOT / "demo" / "data", work_dir=tmp_path / "work"),
    )


@pytest.mark.usefixtures("prefect_harness")
def test_demo_data_is_published_through_contracts(lakefs_env, lakefs_client, tmp_path):
    name = unique_name("demo")
    results = ingest_demo_data(config=demo_config(name, tmp_path))
    assert [(r.kind, r.decision) for r in results] == [("sft", "publish"), ("eval", "publish"),
                                                      ("preference", "publish")]
    assert [r.rows_published for r in results] == [600, 60, 180]
    main = lakefs.Repository(name, client=lakefs_client).branch("main")
    assert main.head.id == results[-1].main_commit.commit_id
    paths = {o.path for o in main.objects(prefix="datasets/")}
    for result in results:
        assert result.clean_path in paths
        assert f"datasets/{result.kind}/manifests/{result.batch_id}.json" in paths
        assert f"datasets/{result.kind}/reports/{result.batch_id}/validation.md" in paths
    assert not [b.id for b in lakefs.Repository(name, client=lakefs_client).branches() if b.id != "main"]
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())  # scratch removed

    again = ingest_demo_data(config=demo_config(name, tmp_path))
    assert [r.decision for r in again] == ["nothing_new"] * 3
    assert main.head.id == results[-1].main_commit.commit_id


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sluice_demo_from_the_command_line(tmp_path):
    """`sluice demo` as a user runs it (shortened training): the tiny base
    model is built, the embedded server starts, every kind is published,
    the pipeline trains, evaluates and decides, and says where to look; a
    rerun publishes nothing new and reuses the training."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKECTL_", "PREFECT_API", "MLFLOW_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    data_dir = tmp_path / "lakefs"
    command = [sys.executable, "-m", "sluice", "demo", f"lakefs.embedded_data_dir={data_dir}",
               "lakefs.embedded_port=0", f"data.work_dir={tmp_path / 'work'}",
               f"training.base_model={tmp_path / 'tiny'}", f"training.output_dir={tmp_path / 'training'}",
               f"tracking.embedded_dir={tmp_path / 'mlflow'}", "training.max_steps=6", "evaluation.max_samples=8"]
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    lines = first.stdout.splitlines()
    assert (tmp_path / "tiny" / "config.json").exists()
    commit = next(line for line in lines if line.startswith("data commit")).split(":", 1)[1].split()[0]
    assert len(commit) == 64
    for kind in ("sft", "eval", "preference"):
        assert any(line.startswith(f"ingest {kind}") and "publish" in line for line in lines), lines
    assert any(line.startswith("model version") and line.endswith("version 1") for line in lines), lines
    assert any(line.startswith("decision") for line in lines)
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow'}" in first.stdout
    assert oct((data_dir / "credentials.json").stat().st_mode)[-3:] == "600"

    again = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"data commit      : {commit}" in again.stdout and again.stdout.count("nothing_new") == 3
    assert "(reused)" in again.stdout and "version 1" in again.stdout
