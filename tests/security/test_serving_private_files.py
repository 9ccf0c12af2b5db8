"""The serving state holds prompts and answers (issue 13, item 12): the request log and the feedback
store are owner-only (0600) from the moment they exist, in an owner-only (0700) folder — whatever
the umask, and also when an older version left them readable by everyone."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.core.config import RegistryConfig, ServingConfig, SluiceConfig, TrackingConfig
from sluice.serving.app import create_app


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common default: files 0644, folders 0755, unless the code asks for less."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def config_for(tmp_path: Path, state_dir: Path) -> SluiceConfig:
    return SluiceConfig(tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"),
                        registry=RegistryConfig(model_name="private-files"),
                        serving=ServingConfig(port=0, state_dir=state_dir))


def test_a_new_server_creates_its_request_log_and_feedback_store_owner_only(tmp_path: Path,
                                                                            open_umask: None) -> None:
    state_dir = tmp_path / "serving"
    state = create_app(config_for(tmp_path, state_dir)).state.serving
    try:
        assert mode(state_dir) == "0o700"
        assert mode(state_dir / "requests.jsonl") == "0o600", "created before any request, owner-only"
        assert mode(state_dir / "feedback.db") == "0o600"
        state.request_log.write({"id": "x", "prompt": "my card is 4111 1111 1111 1111", "completion": "ok"})
        assert mode(state_dir / "requests.jsonl") == "0o600"
        (state_dir / "requests.jsonl").unlink()  # rotated away: the next line recreates it, still private
        state.request_log.write({"id": "y", "prompt": "again", "completion": "ok"})
        assert mode(state_dir / "requests.jsonl") == "0o600"
    finally:
        state.feedback.close()


def test_an_older_readable_request_log_and_folder_are_tightened(tmp_path: Path, open_umask: None) -> None:
    state_dir = tmp_path / "serving"
    state_dir.mkdir(mode=0o755)
    (state_dir / "requests.jsonl").write_text('{"prompt": "from an older version"}\n')
    os.chmod(state_dir / "requests.jsonl", 0o644)
    state = create_app(config_for(tmp_path, state_dir)).state.serving
    try:
        assert mode(state_dir) == "0o700"
        assert mode(state_dir / "requests.jsonl") == "0o600"
        assert "older version" in (state_dir / "requests.jsonl").read_text()  # tightened, not replaced
    finally:
        state.feedback.close()
