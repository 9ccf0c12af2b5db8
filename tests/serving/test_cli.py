"""``sluice serve`` as a user runs it, and the setups it refuses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sluice.serving.app import create_app
from sluice.serving.server import ServingError
from tests.serving.conftest import Registry

SLUICE = [sys.executable, "-m", "sluice"]


def test_sluice_serve_prints_its_url_and_serves_the_champion(registry: Registry, tmp_path: Path) -> None:
    registry.register("cli-model", [2], champion=1)
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_SERVING_API_KEYS"}
    process = subprocess.Popen(
        [*SLUICE, "serve", "--port", "0", f"tracking.embedded_dir={registry.store_dir}",
         "registry.model_name=cli-model", f"serving.state_dir={tmp_path / 'state'}", "serving.watch_seconds=0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", line)
        assert match, line + (process.stderr.read() if process.poll() is not None else "")
        url = match.group(1)
        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{url}/health")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert health.json()["version"] == "1"
        answer = httpx.post(f"{url}/v1/completions", json={"prompt": "The sluice", "max_tokens": 2}, timeout=60)
        assert answer.status_code == 200 and answer.headers["X-Sluice-Model-Version"] == "1"
    finally:
        process.send_signal(signal.SIGINT)
        returncode = process.wait(30)
    assert returncode == 0


def test_sluice_serve_refuses_a_public_address_without_api_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_SERVING_API_KEYS"}
    done = subprocess.run([*SLUICE, "serve", "--host", "0.0.0.0", f"serving.state_dir={tmp_path}",
                           f"tracking.embedded_dir={tmp_path / 'mlflow'}"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "SLUICE_SERVING_API_KEYS" in done.stderr and "0.0.0.0" in done.stderr


def test_keys_from_the_environment_allow_a_public_address(registry: Registry, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = registry.config("any-model", tmp_path / "state")
    monkeypatch.delenv("SLUICE_SERVING_API_KEYS", raising=False)
    with pytest.raises(ServingError, match="SLUICE_SERVING_API_KEYS"):
        create_app(config, host="0.0.0.0")
    monkeypatch.setenv("SLUICE_SERVING_API_KEYS", " first-key , second-key ")
    assert create_app(config, host="0.0.0.0").state.serving.api_keys == ["first-key", "second-key"]
