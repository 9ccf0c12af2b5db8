"""Two things the shell does around every flow command: it runs on the
local stack when `sluice up` is running (its lakeFS, MLflow and Prefect
server, not new temporary ones), and it shows an explained failure as its
message alone, the traceback kept in the log."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import typer

from sluice.core.data.batch import IngestRejected
from sluice.shell.cli.options import explained_failures, use_running_stack


def _stack_record(state_dir, pid: int) -> None:  # type: ignore[no-untyped-def]
    env = {"PREFECT_API_URL": "http://127.0.0.1:4299/api", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5099",
           "LAKECTL_SERVER_ENDPOINT_URL": "http://127.0.0.1:8099", "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": "AKIA",
           "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": "secret", "SLUICE_BRIDGE_URL": "http://127.0.0.1:8799"}
    services = [{"name": name, "pid": pid, "url": "", "log": "", "health": ""}
                for name in ("lakefs", "mlflow", "prefect-server")]
    state_dir.mkdir(parents=True)
    (state_dir / "stack.json").write_text(json.dumps({"state_dir": str(state_dir), "services": services, "env": env}))


def test_commands_use_a_running_stack_and_ignore_a_stopped_one(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # what the command sets stays in this test
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "LAKECTL_SERVER_ENDPOINT_URL",
                "LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"):
        os.environ.pop(key, None)
    stopped = subprocess.Popen([sys.executable, "-c", "pass"])
    stopped.wait()
    _stack_record(tmp_path / "stopped", stopped.pid)
    os.environ["SLUICE_STACK_DIR"] = str(tmp_path / "stopped")
    use_running_stack()
    assert "PREFECT_API_URL" not in os.environ  # a stack that is down: the command starts what it needs

    _stack_record(tmp_path / "running", os.getpid())
    os.environ["SLUICE_STACK_DIR"] = str(tmp_path / "running")
    os.environ["MLFLOW_TRACKING_URI"] = "http://mine:5000"  # what the user set wins
    use_running_stack()
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:4299/api"
    assert os.environ["LAKECTL_SERVER_ENDPOINT_URL"] == "http://127.0.0.1:8099"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mine:5000"
    assert "SLUICE_BRIDGE_URL" not in os.environ  # only what a client needs


def test_an_explained_failure_is_its_message_alone_and_its_traceback_goes_to_the_log(tmp_path, monkeypatch,
                                                                                       capsys):
    monkeypatch.chdir(tmp_path)
    console = logging.StreamHandler(sys.stderr)  # as Prefect's console handler, on the root logger
    logging.getLogger().addHandler(console)
    try:
        with pytest.raises(typer.Exit) as ended, explained_failures(False, {IngestRejected: "REJECTED"}):
            try:
                raise IngestRejected("sft batch b1 rejected by its contract: 3 of 10 rows are invalid")
            except IngestRejected:
                logging.getLogger("prefect.flow_runs").error("Encountered exception during execution: ...",
                                                             exc_info=True)
                raise
    finally:
        logging.getLogger().removeHandler(console)
    assert ended.value.exit_code == 1
    shown = capsys.readouterr().err
    assert "REJECTED: sft batch b1 rejected by its contract: 3 of 10 rows are invalid" in shown
    assert "Traceback" not in shown and "Encountered exception" not in shown
    log = (tmp_path / ".sluice" / "logs" / "sluice.log").read_text()
    assert "Traceback" in log and "IngestRejected: sft batch b1" in log

