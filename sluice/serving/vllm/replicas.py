"""Engine processes: ``serving.vllm_replicas`` of them per model folder, on free loopback ports.

Each replica runs ``vllm_command + [MODEL_DIR, --port, P, --host, 127.0.0.1, --served-model-name,
NAME] (+ [--enable-lora, --max-loras, N] for a LoRA base) + vllm_args``; its output goes to
``<log_dir>/<set>-<i>.log``. A replica counts as up once ``GET /health`` answers 200 within
``vllm_start_timeout_s``; otherwise the error quotes the last lines of its log.

A :class:`ReplicaSet` keeps the adapters it must hold (``adapters``): loading one posts it to
every replica, and a replica that dies is restarted by the set's supervisor thread and gets them
all back before it takes requests again, so an adapter load is never lost on a restart.
Stopping sends SIGTERM, waits, then SIGKILLs the process group.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger("sluice.serving.vllm")

STOP_GRACE_S = 20.0  # SIGTERM lets an engine finish and free its GPU memory; then SIGKILL
SUPERVISE_EVERY_S = 0.5
LOG_TAIL_LINES = 20


class ReplicaError(RuntimeError):
    """An engine process that would not start or answer; the message quotes its log."""


class NoHealthyReplica(RuntimeError):
    """Every replica of the set is down (restarting)."""


@dataclass(frozen=True)
class EngineCommand:
    """How to start one engine process (from ServingConfig's vllm_* fields)."""

    command: list[str]
    args: list[str]
    start_timeout_s: float
    max_loras: int


def engine_argv(engine: EngineCommand, model_dir: Path, port: int, served_name: str, lora: bool) -> list[str]:
    argv = [*engine.command, str(model_dir), "--port", str(port), "--host", "127.0.0.1",
            "--served-model-name", served_name]
    if lora:
        argv += ["--enable-lora", "--max-loras", str(engine.max_loras)]
    return argv + list(engine.args)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return "(no output)"
    text = path.read_text(errors="replace").rstrip().splitlines()[-lines:]
    return "\n".join(text) or "(no output)"


class Replica:
    """One engine process."""

    def __init__(self, name: str, log_path: Path):
        self.name, self.log_path = name, log_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.healthy = False  # up, with the set's adapters loaded: may take requests
        self.outstanding = 0  # requests sent to it and not finished
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self, argv_for_port: Callable[[int], list[str]], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as output:  # the child keeps its own descriptor
            output.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting on port {self.port}\n".encode())
            output.flush()
            self.process = subprocess.Popen(argv_for_port(self.port), stdout=output, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env=env)

    def wait_healthy(self, timeout: float, cancel: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as client:
            while True:
                if cancel is not None and cancel.is_set():
                    self.stop()
                    raise ReplicaError(f"engine {self.name}: stopped while starting")
                if not self.alive():
                    code = self.process.returncode if self.process else None
                    raise ReplicaError(f"engine {self.name} exited with code {code} while starting; its last "
                                       f"output ({self.log_path}):\n{log_tail(self.log_path)}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise ReplicaError(f"engine {self.name} was not healthy after {timeout:g} s "
                                       f"(serving.vllm_start_timeout_s); its last output ({self.log_path}):\n"
                                       f"{log_tail(self.log_path)}")
                time.sleep(0.2)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        self.healthy = False
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("engine %s ignored SIGTERM for %.0f s: killing it", self.name, grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: the engine's workers go too
            process.wait(10)


class ReplicaSet:
    """``count`` replicas of one model folder, supervised."""

    def __init__(self, key: str, *, model_dir: Path, served_name: str, lora: bool, count: int,
                 engine: EngineCommand, log_dir: Path):
        self.key, self.model_dir, self.served_name, self.lora = key, model_dir, served_name, lora
        self.engine = engine
        slug = key.replace(":", "-")[:24]
        self.replicas = [Replica(f"{slug}#{i}", log_dir / f"{slug}-{i}.log") for i in range(count)]
        self.adapters: dict[str, Path] = {}  # what every replica must hold (replayed on restart)
        self._lock = threading.Lock()  # adapters and replica health change together
        self._pick_lock = threading.Lock()
        self._turn = itertools.count()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def _argv(self, port: int) -> list[str]:
        return engine_argv(self.engine, self.model_dir, port, self.served_name, self.lora)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.lora:  # vLLM serves /v1/load_lora_adapter and /v1/unload_lora_adapter only with this set
            env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
        return env

    def start(self) -> None:
        """Start every replica and wait until all are healthy; then supervise them."""
        for replica in self.replicas:
            replica.launch(self._argv, self._env())
        try:
            for replica in self.replicas:
                replica.wait_healthy(self.engine.start_timeout_s, self._stopping)
                with self._lock:
                    replica.healthy = True
        except Exception:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name=f"sluice-vllm-{self.key[:20]}",
                                            daemon=True)
        self._supervisor.start()

    # -------------------------------------------------------------- requests

    def pick(self, exclude: set[int] | None = None) -> Replica:
        """The healthy replica with the fewest requests outstanding (round robin among equals),
        leaving out those whose ``id()`` is in ``exclude``; its count is taken: call :meth:`done` after."""
        with self._pick_lock:
            healthy = [r for r in self.replicas if r.healthy and id(r) not in (exclude or set())]
            if not healthy:
                raise NoHealthyReplica(f"every engine of {self.key} is restarting")
            turn = next(self._turn)
            chosen = min(healthy, key=lambda r: (r.outstanding, (self.replicas.index(r) - turn) % len(self.replicas)))
            chosen.outstanding += 1
            return chosen

    def done(self, replica: Replica) -> None:
        with self._pick_lock:
            replica.outstanding -= 1

    # -------------------------------------------------------------- adapters

    def load_adapter(self, name: str, path: Path) -> None:
        """Load into every healthy replica (a restarting one gets it when it comes back)."""
        with self._lock:
            self.adapters[name] = path
            for replica in [r for r in self.replicas if r.healthy]:
                _post(replica, "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            self.adapters.pop(name, None)
            for replica in [r for r in self.replicas if r.healthy]:
                _post(replica, "/v1/unload_lora_adapter", {"lora_name": name})

    # -------------------------------------------------------------- supervision

    def _supervise(self) -> None:
        while not self._stopping.wait(SUPERVISE_EVERY_S):
            for replica in self.replicas:
                if self._stopping.is_set() or replica.alive():
                    continue
                try:
                    self._restart(replica)
                except Exception as error:  # logged; the next round tries again
                    log.error("restarting engine %s failed: %s", replica.name, error)

    def _restart(self, replica: Replica) -> None:
        with self._lock:
            replica.healthy = False
        code = replica.process.returncode if replica.process else None
        log.warning("engine %s exited (code %s); restarting it. Its last output:\n%s", replica.name, code,
                    log_tail(replica.log_path))
        replica.restarts += 1
        replica.launch(self._argv, self._env())
        replica.wait_healthy(self.engine.start_timeout_s, self._stopping)
        with self._lock:  # adapters loaded meanwhile are in the dict: none is missed
            try:
                for name, path in self.adapters.items():
                    _post(replica, "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
            except Exception:
                replica.stop()  # down again: the next round restarts it, rather than serving without them
                raise
            replica.healthy = True
        log.info("engine %s is back on port %d with %d adapter(s)", replica.name, replica.port, len(self.adapters))

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(self.engine.start_timeout_s + STOP_GRACE_S)
        for replica in self.replicas:
            replica.healthy = False
        threads = [threading.Thread(target=r.stop, daemon=True) for r in self.replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def status(self) -> list[dict[str, object]]:
        return [{"replica": i, "url": r.url, "healthy": r.healthy, "outstanding": r.outstanding,
                 "restarts": r.restarts} for i, r in enumerate(self.replicas)]


def _post(replica: Replica, path: str, body: dict[str, str]) -> None:
    response = httpx.post(f"{replica.url}{path}", json=body, timeout=300)
    if response.status_code != 200:
        raise ReplicaError(f"engine {replica.name}: POST {path} {body} answered {response.status_code}: "
                           f"{response.text[:500]}")
