"""`sluice down` against a stale record (issue 13, item 13): a recorded pid
that another program now holds is never signalled, and the wait for a
process after SIGKILL is bounded. The processes are real (`sleep`), started
by the test and stopped by it."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sluice.shell.stack import Service, StackState, stop_stack


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """`sleep 60` processes the test starts; whatever is left of them is killed after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def _sleep(sleepers: list[subprocess.Popen[bytes]], *, own_group: bool) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["sleep", "60"], start_new_session=own_group)
    sleepers.append(process)
    return process


def _record(state_dir: Path, process: subprocess.Popen[bytes], create_time: float | None) -> None:
    service = Service(name="worker", pid=process.pid, url="", log="", health="", create_time=create_time)
    StackState(state_dir=str(state_dir), services=[service]).save()


def test_down_leaves_alone_a_process_that_reused_a_recorded_pid(tmp_path, sleepers):
    # a stranger that leads its own process group, as a recorded service did: signalling the group would kill it
    stranger = _sleep(sleepers, own_group=True)
    _record(tmp_path, stranger, create_time=psutil.Process(stranger.pid).create_time() - 3600)
    said: list[str] = []
    assert stop_stack(tmp_path, timeout=1, say=said.append) == []
    time.sleep(0.2)
    assert stranger.poll() is None, "down signalled a process that was not the stack's"
    assert any(f"pid {stranger.pid} is now another program" in line for line in said), said


def test_down_leaves_alone_a_later_process_in_a_record_without_start_times(tmp_path, sleepers):
    stranger = _sleep(sleepers, own_group=True)
    _record(tmp_path, stranger, create_time=None)  # as an older version wrote it
    an_hour_ago = time.time() - 3600
    os.utime(tmp_path / "stack.json", (an_hour_ago, an_hour_ago))  # written before the stranger started
    assert stop_stack(tmp_path, timeout=1, say=lambda _: None) == []
    time.sleep(0.2)
    assert stranger.poll() is None


def test_down_stops_a_recorded_process_that_is_ours(tmp_path, sleepers):
    ours = _sleep(sleepers, own_group=True)
    _record(tmp_path, ours, create_time=psutil.Process(ours.pid).create_time())
    assert stop_stack(tmp_path, timeout=5, say=lambda _: None) == ["worker"]
    assert ours.wait(5) is not None
    assert (tmp_path / "stack.stopped.json").exists() and not (tmp_path / "stack.json").exists()


def test_the_wait_after_sigkill_is_bounded_and_reported(tmp_path, sleepers):
    # not a group leader: the group signals miss it, as SIGKILL misses a process stuck in the kernel
    unkillable = _sleep(sleepers, own_group=False)
    _record(tmp_path, unkillable, create_time=psutil.Process(unkillable.pid).create_time())
    said: list[str] = []
    result: list[list[str]] = []
    down = threading.Thread(target=lambda: result.append(stop_stack(tmp_path, timeout=0.2, say=said.append,
                                                                    kill_wait=1.0)), daemon=True)
    started = time.monotonic()
    down.start()
    down.join(15)
    assert not down.is_alive(), "down was still waiting 15 s after SIGKILL"
    assert time.monotonic() - started < 5
    assert result == [[]]
    assert any("still there 1 s after SIGKILL" in line for line in said), said
    assert (tmp_path / "stack.json").exists()  # still running: the record is kept for the next `down`
