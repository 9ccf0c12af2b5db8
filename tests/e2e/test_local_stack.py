"""The whole loop on the local stack, with a real Prefect server and worker:

raw data committed on an incoming-* branch (lakeFS SDK) → post-commit webhook
→ event bridge → Prefect event → validate-incoming deployment run → merges
into main → post-merge webhook → event → pipeline-on-merge run pinned to the
merge commit → a new @champion → the serving endpoint (started before any
model existed) answers with that version, without a restart. Invalid data on
an incoming branch never reaches main and starts no training."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import lakefs
import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
SLUICE = [sys.executable, "-m", "sluice"]


def _config_file(tmp_path: Path, tiny_model: Path) -> Path:
    config = {
        "data": {"work_dir": str(tmp_path / "work")},
        "lakefs": {"embedded_data_dir": str(tmp_path / "lakefs")},
        "tracking": {"embedded_dir": str(tmp_path / "mlflow")},
        "training": {"base_model": str(tiny_model), "finetune": "full", "learning_rate": 0.002, "max_steps": 40,
                     "batch_size": 16, "logging_steps": 10, "save_steps": 100,
                     "output_dir": str(tmp_path / "training")},
        "evaluation": {"max_new_tokens": 24, "max_samples": 40, "bootstrap_resamples": 200},
        "promotion": {"min_metrics": {"rougeL": 0.05}, "max_regression": {"rougeL": 0.5},
                      "must_beat_base_model": ["rougeL"]},
    }
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def stack(tmp_path, tiny_model):  # type: ignore[no-untyped-def]
    state_dir = tmp_path / "stack"
    # what a run without servers (make demo) left in the embedded MLflow store: the stack must serve it
    from sluice.core.config import TrackingConfig
    from sluice.core.registry.tracking import ensure_experiment, tracking_target

    ensure_experiment(tracking_target(TrackingConfig(embedded_dir=tmp_path / "mlflow")), "made-before-up")
    up = subprocess.run([*SLUICE, "up", "--free-ports", "--state-dir", str(state_dir), "-c",
                         str(_config_file(tmp_path, tiny_model))], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=400, check=False)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env = dict(line.split("=", 1) for line in (state_dir / "stack.env").read_text().splitlines())
        yield state_dir, env
    finally:
        down = subprocess.run([*SLUICE, "down", "--state-dir", str(state_dir)], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=120, check=False)
        assert down.returncode == 0, down.stdout + down.stderr
        if up.returncode == 0:  # down stopped exactly what up recorded, and all of it is gone
            from sluice.shell.stack import process_alive

            stopped = yaml.safe_load((state_dir / "stack.stopped.json").read_text())["services"]
            assert {s["name"] for s in stopped} == {"lakefs", "mlflow", "prefect-server", "worker", "bridge",
                                                    "serving"}
            assert [s["name"] for s in stopped if process_alive(s["pid"])] == []


def _flow_runs(env: dict[str, str], deployment: str) -> list:  # type: ignore[type-arg]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))


def _final_run(env: dict[str, str], deployment: str, commit_id: str, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in _flow_runs(env, deployment):
            if run.parameters.get("commit_id") == commit_id and run.state and run.state.is_final():
                return run
        time.sleep(1)
    raise AssertionError(f"no finished {deployment} run for {commit_id} in {timeout:.0f} s: "
                         f"{[(r.parameters.get('commit_id'), r.state_name) for r in _flow_runs(env, deployment)]}")


def _upload(repo: lakefs.Repository, branch_name: str, files: dict[str, str]) -> str:
    branch = repo.branch(branch_name).create(source_reference="main")
    for path, source in files.items():
        branch.object(path).upload((REPO_ROOT / source).read_bytes())
    return str(branch.commit(message=f"upload to {branch_name}").get_commit().id)


def test_new_data_reaches_the_serving_endpoint_and_bad_data_starts_nothing(stack):
    state_dir, env = stack
    client = lakefs.Client(host=env["LAKECTL_SERVER_ENDPOINT_URL"], username=env["LAKECTL_CREDENTIALS_ACCESS_KEY_ID"],
                           password=env["LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"])
    repo = lakefs.Repository("sluice-data", client=client)
    serving, key = env["SLUICE_SERVING_URL"], env["SLUICE_SERVING_API_KEYS"]
    assert httpx.get(f"{serving}/health").status_code == 503  # up, and no champion yet
    serving_pid = next(s for s in yaml.safe_load((state_dir / "stack.json").read_text())["services"]
                       if s["name"] == "serving")["pid"]

    # invalid data: validated, rejected, main untouched, no training
    main_before = repo.branch("main").head.id
    bad = _upload(repo, "incoming-bad", {"sft/broken.jsonl": "demo/broken/sft.jsonl"})
    assert _final_run(env, "validate-incoming", bad, 120).state_name == "Failed"
    assert repo.branch("main").head.id == main_before
    assert repo.branch("incoming-bad").head.id == bad  # the raw upload stays on its branch
    assert _flow_runs(env, "pipeline-on-merge") == []

    # valid data: sft and eval files → two merges into main → the pipeline on the last one
    good = _upload(repo, "incoming-good", {"sft/chats.jsonl": "demo/data/sft.jsonl",
                                           "eval/questions.jsonl": "demo/data/eval.jsonl"})
    assert _final_run(env, "validate-incoming", good, 180).state_name == "Completed"
    merged = repo.branch("main").head.id
    assert merged != main_before
    run = _final_run(env, "pipeline-on-merge", merged, 420)
    assert run.state_name == "Completed", run.state

    # lakeFS delivering the same merge again: the bridge emits nothing, so no second pipeline run can start
    token = json.loads((state_dir / "secrets.json").read_text())["bridge_token"]
    counts_before = httpx.get(f"{env['SLUICE_BRIDGE_URL']}/health").json()["counts"]
    again = httpx.post(f"{env['SLUICE_BRIDGE_URL']}/lakefs", headers={"X-Sluice-Token": token},
                       json={"event_type": "post-merge", "repository_id": "sluice-data", "branch_id": "main",
                             "commit_id": merged, "source_ref": merged})
    assert again.status_code == 200 and again.json()["status"] == "duplicate"  # handled: answered after the ledger
    counts_after = httpx.get(f"{env['SLUICE_BRIDGE_URL']}/health").json()["counts"]
    assert counts_after["emitted"] == counts_before["emitted"]  # no event went to Prefect, none can trigger
    assert counts_after["duplicates"] > counts_before["duplicates"]
    assert [r.parameters["commit_id"] for r in _flow_runs(env, "pipeline-on-merge")].count(merged) == 1

    from mlflow import MlflowClient

    assert MlflowClient(env["MLFLOW_TRACKING_URI"]).get_experiment_by_name("made-before-up") is not None
    champion = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_model_version_by_alias("sluicegate-model", "champion")
    assert champion.tags["lakefs.commit"] == merged
    deadline = time.monotonic() + 60
    while httpx.get(f"{serving}/health").json().get("version") != champion.version:
        assert time.monotonic() < deadline, httpx.get(f"{serving}/health").json()
        time.sleep(0.5)
    answer = httpx.post(f"{serving}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                        json={"model": "sluicegate-model", "max_tokens": 8,
                              "messages": [{"role": "user", "content": "When does gate 3 open?"}]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Sluice-Model-Version"] == champion.version
    assert answer.json()["choices"][0]["message"]["content"]
    status = subprocess.run([*SLUICE, "status", "--state-dir", str(state_dir)], capture_output=True, text=True,
                            check=False, cwd=REPO_ROOT)
    assert status.returncode == 0 and "serving" in status.stdout
    assert f"pid {serving_pid}" in status.stdout  # the same process: no restart
