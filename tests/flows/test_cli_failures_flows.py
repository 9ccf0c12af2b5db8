"""What a user sees when a `sluice` command that runs a flow fails (or used to): the installed script in a
fresh working directory, against the session's embedded lakeFS or none, Prefect in its ephemeral mode. One
message, the documented exit status (1: the command failed, 2: it is not set up), no traceback on the
console. Each case starts a temporary Prefect server (~10 s), hence slow."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sluice.core.config import TrackingConfig
from sluice.core.registry.tracking import tracking_target
from sluice.serving.feedback import FeedbackStore
from tests.conftest import REPO_ROOT, unique_name
from tests.unit.test_cli_failures import assert_one_clean_message, run_sluice

pytestmark = pytest.mark.slow


def _lakefs(endpoint) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"LAKECTL_SERVER_ENDPOINT_URL": endpoint.url, "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": endpoint.access_key_id,
            "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": endpoint.secret_access_key}


def _fresh_repository() -> list[str]:
    name = unique_name("cli")
    return [f"lakefs.repository={name}", f"lakefs.storage_namespace=local://{name}"]


def test_rollback_with_no_previous_version(tmp_path):
    """A champion and nothing before it: the rollback has nowhere to go (it printed 2 Prefect tracebacks)."""
    target = tracking_target(TrackingConfig(embedded_dir=tmp_path / ".sluice" / "mlflow"))
    client = MlflowClient(target.tracking_uri)
    client.create_registered_model("sluicegate-model")
    (tmp_path / "model").mkdir()
    version = client.create_model_version("sluicegate-model", source=str(tmp_path / "model"))
    client.set_registered_model_alias("sluicegate-model", "champion", version.version)

    done = run_sluice(tmp_path, "rollback")
    assert_one_clean_message(done, 1, "error: no @previous version to roll back to")
    debug = run_sluice(tmp_path, "rollback", "--debug")  # Prefect logs the traceback: it is not printed again
    assert debug.returncode == 1 and debug.stderr.count("no @previous version to roll back to") >= 1
    tracebacks = debug.stderr.count("Traceback (most recent call last)")
    assert 1 <= tracebacks <= debug.stderr.count("Encountered exception") + 1, debug.stderr
    assert debug.stderr.count("raise NoPreviousVersion") <= 1 or tracebacks == 1, debug.stderr


@pytest.mark.parametrize(("rows", "message"), [
    ("".join(json.dumps({"prompt": i, "response": "x"}) + "\n" for i in range(12)),
     "REJECTED: sft batch"),  # a batch its contract rejects
    ('{"prompt": "a", "response": "b"}\n{not json\n', "REJECTED: cannot read the input"),  # an unreadable file
], ids=["rejected", "unreadable"])
def test_a_rejected_or_unreadable_ingest(tmp_path, lakefs_server, rows, message):
    (tmp_path / "rows.jsonl").write_text(rows)
    done = run_sluice(tmp_path, "ingest", "rows.jsonl", "--kind", "sft", *_fresh_repository(),
                      f"contracts.directory={REPO_ROOT / 'data_contracts'}", **_lakefs(lakefs_server))
    assert_one_clean_message(done, 1, message, "main is untouched" if "sft batch" in message else "rows.jsonl:2")


def test_a_contract_with_an_unknown_key(tmp_path, lakefs_server):
    """The message named the file, line and key, but inside 153 lines of tracebacks."""
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "sft.yaml").write_text((REPO_ROOT / "data_contracts" / "sft.yaml").read_text()
                                        .replace("\nversion:", "\ncolour: red\nversion:", 1))
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    done = run_sluice(tmp_path, "ingest", "rows.jsonl", "--kind", "sft", *_fresh_repository(),
                      "contracts.directory=contracts", **_lakefs(lakefs_server))
    shown = assert_one_clean_message(done, 2, "error: invalid contract contracts/sft.yaml",
                                     "colour: unknown key (not part of the contract language)")
    assert len(done.stderr.splitlines()) < 12, shown  # Prefect's progress lines and the message, nothing more


def test_feedback_export_reads_the_running_stack_store(tmp_path, lakefs_server):
    """After `sluice up`, serving keeps its feedback with the stack; export must read that store, not
    .sluice/serving/feedback.db (where it used to look, and found nothing)."""
    stack = tmp_path / "stack"
    FeedbackStore(stack / "serving" / "feedback.db").close()  # what the stack's serving endpoint created
    services = [{"name": name, "pid": os.getpid(), "url": "", "log": "", "health": ""}  # a live pid: "running"
                for name in ("lakefs", "mlflow", "prefect-server")]
    (stack / "stack.json").write_text(json.dumps({"state_dir": str(stack), "services": services,
                                                  "env": _lakefs(lakefs_server)}))
    done = run_sluice(tmp_path, "feedback", "export", f"contracts.directory={REPO_ROOT / 'data_contracts'}",
                      SLUICE_STACK_DIR=str(stack))
    assert_one_clean_message(done, 0, "0 preference pair(s) from feedback", "waiting for more")
    assert not Path(tmp_path / ".sluice" / "serving").exists()
