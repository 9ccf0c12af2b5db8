"""What the local stack records about itself (``<state dir>/stack.json``),
and how a recorded pid is told from a later process that reused it: by the
start time psutil reports for it, recorded when the service started."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sluice.core.private_files import private_dir, write_private

# a process's start time is boot time + ticks, and boot time (whole seconds) moves with clock updates: within
# this it is the same start; a pid cannot be freed and handed out again that fast
_SAME_START_SECONDS = 1.0


@dataclass
class Service:
    name: str
    pid: int
    url: str
    log: str
    health: str  # URL answering 2xx (or the serving endpoint's 503 "no champion yet") while up
    create_time: float | None = None  # psutil's start time of the pid: tells our process from a later one


@dataclass
class StackState:
    state_dir: str
    services: list[Service] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    repository: str = ""
    started_at: float = 0.0

    def save(self) -> None:
        """stack.json and stack.env, owner-only from their first byte (they hold the stack's credentials)."""
        folder = private_dir(Path(self.state_dir), tighten_existing=True)
        write_private(folder / "stack.json", json.dumps(asdict(self), indent=2))
        write_private(folder / "stack.env", "".join(f"{k}={v}\n" for k, v in sorted(self.env.items())))

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        path = state_dir / "stack.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(state_dir=data["state_dir"], services=[Service(**s) for s in data["services"]], env=data["env"],
                   repository=data.get("repository", ""), started_at=data.get("started_at", 0.0))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def process_create_time(pid: int) -> float | None:
    """When the process ``pid`` started (psutil's create time), or None when there is no such process."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def is_our_process(service: Service, recorded_at: float) -> bool:
    """Whether ``service.pid`` is still the process the stack started, not a later one that reused the pid: its
    start time is the recorded one (records without one, from older versions: it started before the record
    was last written, ``recorded_at``)."""
    started = process_create_time(service.pid)
    if started is None or not process_alive(service.pid):
        return False
    if service.create_time is None:
        return started <= recorded_at + _SAME_START_SECONDS
    return abs(started - service.create_time) < _SAME_START_SECONDS


def recorded_at(state_dir: Path) -> float:
    """When stack.json was last written (after every service it lists had started)."""
    return (state_dir / "stack.json").stat().st_mtime
