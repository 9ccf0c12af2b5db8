"""The ``sluice`` CLI stays light, reports config problems clearly, and the
bundled demo data is exactly what the generator makes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sluice.core.data.demo_data import build_demo_data, write_demo_data
from sluice.shell.cli import app
from tests.conftest import REPO_ROOT

HEAVY = ["torch", "transformers", "prefect", "lakefs", "mlflow", "pandas", "great_expectations", "ragas",
         "starlette", "uvicorn"]


def test_help_imports_nothing_heavy():
    """`sluice --help` must answer at once: no heavy library may load for it."""
    probe = (
        "import sys, io, contextlib\n"
        "from sluice.shell.cli import app\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    app(['--help'])\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "lakefs", "config", "demo-data"):
        assert command in result.output


def test_config_show_applies_overrides_and_config_files(tmp_path):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("lakefs:\n  repository: from-file\n")
    result = CliRunner().invoke(app, ["config", "show", "-c", str(experiment), "lakefs.default_branch=trunk"])
    assert result.exit_code == 0, result.output
    assert "repository: from-file" in result.output and "default_branch: trunk" in result.output


def test_config_errors_exit_2_with_every_problem(tmp_path):
    result = CliRunner().invoke(app, ["config", "show", "lakefs.repository=BAD", "lakefs.nope=1"])
    assert result.exit_code == 2
    assert "2 problem(s)" in result.output
    assert "lakefs.repository (override 'lakefs.repository=BAD')" in result.output


def test_config_check_names_each_file(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("project: ok\n")
    bad.write_text("lakefs:\n  repository: Bad_Name\n")
    result = CliRunner().invoke(app, ["config", "check", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"ok   {good}" in result.output and f"FAIL {bad}" in result.output and f"{bad}:2" in result.output


def test_lakefs_serve_requires_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", raising=False)
    result = CliRunner().invoke(app, ["lakefs", "serve", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "LAKECTL_CREDENTIALS_ACCESS_KEY_ID" in result.output


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path):
    from sluice.shell.local_lakefs import EmbeddedLakeFS, EmbeddedLakeFSError

    first = EmbeddedLakeFS(tmp_path, port=0, credentials=("AKIAONE", "secret"))
    first.start()
    try:
        second = EmbeddedLakeFS(tmp_path, port=0, credentials=("AKIAONE", "secret"))
        try:
            second.start(timeout=15)
            raise AssertionError("a second server started on the same data directory")
        except EmbeddedLakeFSError as err:
            assert "is in use by another lakeFS-compatible server" in str(err)
    finally:
        first.stop()


def test_a_busy_port_is_a_clear_error(tmp_path):
    import socket

    from sluice.shell.local_lakefs import EmbeddedLakeFS, EmbeddedLakeFSError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EmbeddedLakeFS(tmp_path, port=taken.getsockname()[1], credentials=("AKIAONE", "secret"))
        try:
            server.start(timeout=15)
            raise AssertionError("started on a busy port")
        except EmbeddedLakeFSError as err:
            assert "cannot listen on" in str(err) and "Choose another port" in str(err)


def test_bundled_demo_data_is_exactly_what_the_generator_writes(tmp_path):
    written = write_demo_data(tmp_path)
    assert len(written) == 4
    for path in written:
        bundled = REPO_ROOT / "demo" / path.relative_to(tmp_path)
        assert bundled.read_bytes() == path.read_bytes(), f"{bundled} is stale: run `sluice demo-data`"


def test_demo_eval_questions_never_overlap_training():
    from sluice.core.data.demo_data import _LAST, _SYLLABLES_B

    town = re.compile(r"\b[A-Z][a-z]+(?:" + "|".join(_SYLLABLES_B) + r")\b")
    data = build_demo_data()
    train_text = json.dumps(data["sft.jsonl"]) + json.dumps(data["preference.jsonl"])
    train_towns = set(town.findall(train_text)) - set(_LAST)  # "Fenwick" is a keeper, not a town
    asked = {found for row in data["eval.jsonl"] for found in town.findall(row["question"])}
    assert len(train_towns) == 120 and len(asked) == 30
    assert not asked & train_towns
    assert all(set(row) == {"question", "contexts", "reference"} for row in data["eval.jsonl"])
    assert all(set(row) == {"prompt", "chosen", "rejected"} for row in data["preference.jsonl"])
    assert all(row["chosen"] != row["rejected"] for row in data["preference.jsonl"])


def test_demo_data_lines_are_valid_json():
    for path in (REPO_ROOT / "demo" / "data").glob("*.jsonl"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert isinstance(json.loads(line), dict), f"{path}:{number}"
    assert Path(REPO_ROOT / "demo" / "data" / "sft.jsonl").stat().st_size > 0


def test_lakefs_serve_falls_back_to_the_data_dirs_credentials(tmp_path, monkeypatch):
    """The embedded default writes credentials.json; serving that data dir
    again needs no variables."""
    import lakefs

    from sluice.shell.local_lakefs import load_or_create_credentials

    for key in ("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    key, secret = load_or_create_credentials(tmp_path)
    ready = tmp_path / "ready.json"
    process = subprocess.Popen([sys.executable, "-m", "sluice", "lakefs", "serve", "--data-dir", str(tmp_path),
                                "--port", "0", "--ready-file", str(ready)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        import time

        deadline = time.monotonic() + 30
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()
            time.sleep(0.05)
        client = lakefs.Client(host=json.loads(ready.read_text())["endpoint"], username=key, password=secret)
        assert list(lakefs.repositories(client=client)) == []
    finally:
        process.terminate()
        process.wait(10)
