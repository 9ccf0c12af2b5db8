"""What a user sees when a `sluice` command fails, run as the user runs it (the installed script, in a
fresh working directory, never the project's own .sluice or a running stack): one message that says what is
wrong, where and what to do, the documented exit status (1: the command failed, 2: it is not set up), and no
traceback (that goes to .sluice/logs/sluice.log, or to the console with --debug). These cases start no flow;
those that do are in tests/flows/test_cli_failures_flows.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.shell.cli.data_commands import feedback_store

LAKEFS_VARIABLES = ("LAKECTL_SERVER_ENDPOINT_URL", "LAKECTL_CREDENTIALS_ACCESS_KEY_ID",
                    "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY")
_SCRIPT = Path(sys.executable).parent / "sluice"  # .venv/bin/sluice, the console script users run
SLUICE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "sluice"]


def run_sluice(cwd: Path, *args: str, timeout: float = 120, **variables: str) -> subprocess.CompletedProcess[str]:
    """`sluice ARGS` in ``cwd``, offline, beside no stack, with no lakeFS, Prefect or MLflow but ``variables``."""
    env = {key: value for key, value in os.environ.items()
           if key not in (*LAKEFS_VARIABLES, "PREFECT_API_URL", "MLFLOW_TRACKING_URI", "SLUICE_BRIDGE_TOKEN")}
    env.update({"HF_HUB_OFFLINE": "1", "SLUICE_STACK_DIR": str(cwd / "no-stack"),
                "PREFECT_HOME": str(cwd / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **variables})
    return subprocess.run([*SLUICE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_clean_message(done: subprocess.CompletedProcess[str], exit_code: int, *phrases: str) -> str:
    """The exit status, every phrase, no traceback; what was shown."""
    shown = done.stdout + done.stderr
    assert done.returncode == exit_code, shown
    assert "Traceback" not in shown, shown
    for phrase in phrases:
        assert phrase in shown, shown
    return shown


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_feedback_export_without_a_store_says_where_it_looked(tmp_path):
    done = run_sluice(tmp_path, "feedback", "export")
    assert_one_clean_message(done, 1, "no feedback store at .sluice/serving/feedback.db",
                             str(tmp_path / "no-stack" / "serving"), "--database")
    assert "Traceback" in (tmp_path / ".sluice" / "logs" / "sluice.log").read_text()


@pytest.mark.parametrize("command", [["bridge", "install-action"], ["bridge", "reconcile"]])
def test_bridge_commands_without_lakefs_name_every_missing_variable(tmp_path, command):
    done = run_sluice(tmp_path, *command, SLUICE_BRIDGE_TOKEN="token")
    shown = assert_one_clean_message(done, 2, f"`sluice {' '.join(command)}` needs", *LAKEFS_VARIABLES,
                                     f"set -a; . {tmp_path / 'no-stack' / 'stack.env'}; set +a")
    assert "run through `sluice`" not in shown  # the user is running `sluice` already


def test_a_lakefs_endpoint_without_credentials_is_a_setup_error(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    endpoint = {"LAKECTL_SERVER_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}
    ingest = run_sluice(tmp_path, "ingest", "rows.jsonl", "--kind", "sft", **endpoint)
    assert_one_clean_message(ingest, 2, "LAKECTL_SERVER_ENDPOINT_URL is set but LAKECTL_CREDENTIALS_ACCESS_KEY_ID "
                                        "and LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY are not")
    install = run_sluice(tmp_path, "bridge", "install-action", **endpoint)
    assert_one_clean_message(install, 2, "LAKECTL_CREDENTIALS_ACCESS_KEY_ID, LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY")


def test_an_unreachable_lakefs_is_one_message_and_debug_shows_the_traceback(tmp_path):
    lakefs = {"LAKECTL_SERVER_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}",
              "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": "AKIAUNREACHABLE", "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": "secret"}
    done = run_sluice(tmp_path, "bridge", "install-action", **lakefs)
    assert_one_clean_message(done, 1, "could not install the bridge's action in sluice-data", "is not reachable",
                             "(details: .sluice/logs/sluice.log, or run again with --debug)")
    debug = run_sluice(tmp_path, "bridge", "install-action", "--debug", **lakefs)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "LakeFSUnavailable" in debug.stderr


def test_an_unreachable_prefect_server_is_one_message(tmp_path):
    done = run_sluice(tmp_path, "rollback", PREFECT_API_URL=f"http://127.0.0.1:{_closed_port()}/api")
    assert_one_clean_message(done, 1, "is not reachable", "unset PREFECT_API_URL")


def test_a_busy_embedded_port_says_so_without_an_old_log(tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir(mode=0o700)
    (lake / "server.log").write_text("a line an earlier start wrote\n")
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_sluice(tmp_path, "ingest", "rows.jsonl", "--kind", "sft", f"lakefs.embedded_data_dir={lake}",
                          f"lakefs.embedded_port={port}")
    shown = assert_one_clean_message(done, 1, "the embedded lakeFS server did not start", str(lake / "server.log"),
                                     f"cannot listen on 127.0.0.1:{port}", "lakefs.embedded_port=")
    assert "an earlier start" not in shown


def test_demo_data_writes_only_inside_the_folder_it_is_given(tmp_path):
    done = run_sluice(tmp_path, "demo-data", "--out-dir", "given/demo")
    assert done.returncode == 0, done.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "given").rglob("*") if p.is_file())
    assert written == ["given/demo/broken/sft.jsonl", "given/demo/data/eval.jsonl",
                       "given/demo/data/preference.jsonl", "given/demo/data/sft.jsonl"]


# ------------------------------------------------------------ which feedback store `feedback export` reads


def _stack_with_store(stack: Path, serving: Path) -> None:
    """What `sluice up` leaves: its config (serving.state_dir with the stack) and the endpoint's store."""
    stack.mkdir(parents=True)
    (stack / "config.yaml").write_text(f"serving:\n  state_dir: {serving}\n")
    serving.mkdir(parents=True)
    (serving / "feedback.db").write_bytes(b"")


def test_feedback_export_reads_the_store_the_local_stack_serves_into(tmp_path, monkeypatch):
    stack, own = tmp_path / "stack", tmp_path / "serving"
    _stack_with_store(stack, stack / "serving")
    monkeypatch.setenv("SLUICE_STACK_DIR", str(stack))
    stacks = stack / "serving" / "feedback.db"
    assert feedback_store(own, state_dir_set=False, stack_running=True) == stacks
    assert feedback_store(own, state_dir_set=False, stack_running=False) == stacks  # after `sluice down`
    assert feedback_store(own, state_dir_set=True, stack_running=True) == own / "feedback.db"  # asked for
    own.mkdir()
    (own / "feedback.db").write_bytes(b"")
    assert feedback_store(own, state_dir_set=False, stack_running=False) == own / "feedback.db"  # `sluice serve`'s


def test_feedback_export_without_a_stack_reads_serving_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SLUICE_STACK_DIR", str(tmp_path / "never-started"))
    assert feedback_store(tmp_path / "serving", state_dir_set=False, stack_running=False) == \
        tmp_path / "serving" / "feedback.db"


def test_the_stack_config_says_where_its_store_is(tmp_path, monkeypatch):
    stack = tmp_path / "stack"
    _stack_with_store(stack, tmp_path / "elsewhere")
    monkeypatch.setenv("SLUICE_STACK_DIR", str(stack))
    assert feedback_store(tmp_path / "own", state_dir_set=False, stack_running=True) == \
        tmp_path / "elsewhere" / "feedback.db"
