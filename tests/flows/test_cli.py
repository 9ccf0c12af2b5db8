"""`sluice` commands as a user runs them, against the session's embedded
lakeFS: a failure the project explains is printed as that explanation alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_a_rejected_ingest_from_the_shell_prints_no_traceback(tmp_path, lakefs_env):
    """The whole command, as a user runs it: only the clean message on the console."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"prompt": i, "response": "x"}) + "\n" for i in range(12)))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run([sys.executable, "-m", "sluice", "ingest", str(bad), "--kind", "sft",
                           "lakefs.repository=cli-failure", "lakefs.storage_namespace=local://cli-failure",
                           f"data.work_dir={tmp_path / 'work'}", f"contracts.directory={REPO_ROOT / 'data_contracts'}"],
                          cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REJECTED: sft batch" in done.stderr and "every field has its declared type" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "Traceback" in (tmp_path / ".sluice" / "logs" / "sluice.log").read_text()
