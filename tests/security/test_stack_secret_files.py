"""The stack's secrets and the bridge's ledger are owner-only from the moment
they exist (issue 13, item 12): never written at the umask's mode and
chmodded afterwards, and their folders are 0700.

The tests run with umask 0, so a file created without an explicit mode would
be 0666, forbid chmod on files (a file that needs one was visible before it),
and look at each file's mode at the moment it is renamed into place."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.shell.bridge_ledger import EmittedLedger
from sluice.shell.local_lakefs import CREDENTIALS_FILE, load_or_create_credentials
from sluice.shell.stack import StackState, stack_secrets


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def renamed_modes(monkeypatch) -> Iterator[dict[str, int]]:  # type: ignore[no-untyped-def]
    """Umask 0, no chmod of files, and the mode of every file as it is renamed into place (by final name)."""
    modes: dict[str, int] = {}
    chmod, replace = os.chmod, os.replace

    def no_chmod_of_files(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.path.isfile(path):
            raise AssertionError(f"chmod of {path} after it was created: it was readable at another mode before")
        return chmod(path, *args, **kwargs)

    def recording_replace(source, target, *args, **kwargs):  # type: ignore[no-untyped-def]
        modes[Path(target).name] = mode(Path(source))
        return replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", no_chmod_of_files)
    monkeypatch.setattr(os, "replace", recording_replace)
    old_umask = os.umask(0)
    try:
        yield modes
    finally:
        os.umask(old_umask)


def test_stack_json_env_and_secrets_are_created_0600_in_a_0700_folder(tmp_path, renamed_modes):
    project_state = tmp_path / ".sluice"
    state_dir = project_state / "stack"
    StackState(state_dir=str(state_dir), env={"LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": "s3cret"}).save()
    tokens = stack_secrets(state_dir)
    assert tokens["bridge_token"] and tokens["serving_api_key"].startswith("sk-sluice-")
    for name in ("stack.json", "stack.env", "secrets.json"):
        assert renamed_modes[name] == 0o600, f"{name} was {oct(renamed_modes[name])} before it was in place"
        assert mode(state_dir / name) == 0o600, name
    assert mode(state_dir) == 0o700 and mode(project_state) == 0o700
    assert not [p.name for p in state_dir.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_an_existing_world_readable_stack_folder_is_tightened(tmp_path, renamed_modes):
    state_dir = tmp_path / "stack"
    state_dir.mkdir(mode=0o755)
    StackState(state_dir=str(state_dir)).save()
    assert mode(state_dir) == 0o700


def test_the_bridge_ledger_and_its_wal_are_owner_only_from_creation(tmp_path, renamed_modes):
    path = tmp_path / "state" / "bridge" / "emitted.db"
    ledger = EmittedLedger(path)
    reader = sqlite3.connect(path)  # held open, so the last writer's close does not remove the -wal file
    try:
        reader.execute("SELECT count(*) FROM watermarks").fetchone()
        ledger.set_watermark("demo", "main", "c0ffee")
        modes = {p.name: oct(mode(p)) for p in path.parent.iterdir() if p.name.startswith("emitted.db")}
    finally:
        reader.close()
    assert set(modes) >= {"emitted.db", "emitted.db-wal"}
    assert modes == {name: oct(0o600) for name in modes}
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700


def test_the_embedded_lakefs_credentials_folder_is_0700(tmp_path, renamed_modes):
    data_dir = tmp_path / "lakefs"
    load_or_create_credentials(data_dir)
    assert mode(data_dir) == 0o700 and mode(data_dir / CREDENTIALS_FILE) == 0o600
