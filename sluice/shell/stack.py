"""The local stack: every service of Sluicegate on loopback, started by
``sluice up``, listed by ``sluice status``, stopped by ``sluice down``.

Services, in start order: the embedded lakeFS, an MLflow server (sqlite
backend, proxied artifacts), a Prefect server, a process work pool and its
worker, the event bridge, and the serving endpoint. lakeFS and MLflow keep
their data where the embedded defaults do (``lakefs.embedded_data_dir``,
``tracking.embedded_dir``: ``.sluice/lakefs`` and ``.sluice/mlflow``), so the
stack serves what ``make demo`` published, trained and promoted. Then ``prefect deploy
--all`` registers prefect.yaml, the data repository is created and the
bridge's lakeFS action is installed in it.

Each service runs in its own session (so it outlives the ``sluice up``
command), logs to ``<state dir>/logs/<service>.log``, and is recorded in
``<state dir>/stack.json`` with its pid, its start time and URL. ``sluice
down`` stops exactly the recorded processes (and their process groups) and
checks they are gone: a pid whose process started at another time is a
stranger that reused the number, and is left alone.
``<state dir>/stack.env`` holds the variables a shell needs to use the stack
(``set -a; . .sluice/stack/stack.env``). The state folder is 0700, and its
files holding secrets (stack.json, stack.env, secrets.json) are created 0600.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sluice.core.config import SluiceConfig, config_to_yaml
from sluice.core.private_files import private_dir, write_private
from sluice.core.project import PROJECT_ROOT
from sluice.shell.stack_state import (
    Service,
    StackState,
    is_our_process,
    process_alive,
    process_create_time,
    recorded_at,
)

__all__ = ["DEFAULT_PORTS", "KILL_WAIT_SECONDS", "Service", "Stack", "StackError", "StackState", "free_port",
           "process_alive", "running_stack_env", "stack_status", "stop_stack"]

WORK_POOL = "sluicegate-process"
KILL_WAIT_SECONDS = 5.0  # how long `down` waits for a process to vanish after SIGKILL
DEFAULT_PORTS = {"lakefs": 8000, "mlflow": 5000, "prefect": 4200, "bridge": 8765, "serving": 8080}


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def health_status(url: str, timeout: float = 2.0) -> int | None:
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return None


@dataclass(frozen=True)
class _Variables:
    """The stack's environment variables, by the system they point at; each process gets the groups it needs."""

    url: dict[str, str]  # service name -> its loopback base URL
    base: dict[str, str]  # every process
    lake: dict[str, str]  # LAKECTL_*: the embedded lakeFS and its credentials
    prefect: dict[str, str]  # PREFECT_API_URL
    mlflow: dict[str, str]  # MLFLOW_TRACKING_URI
    serving: dict[str, str]  # the serving endpoint's URL and API key
    prefect_client: dict[str, str]  # Prefect clients (CLI, worker, bridge): base, PREFECT_API_URL, their own home

    @classmethod
    def for_stack(cls, url: dict[str, str], key: str, secret: str, serving_api_key: str,
                  state_dir: Path) -> _Variables:
        base = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
                "SLUICE_ENV": "", "PYTHONUNBUFFERED": "1"}
        prefect = {"PREFECT_API_URL": f"{url['prefect']}/api"}
        return cls(
            url=url,
            base=base,
            lake={"LAKECTL_SERVER_ENDPOINT_URL": url["lakefs"], "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": key,
                  "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": secret},
            prefect=prefect,
            mlflow={"MLFLOW_TRACKING_URI": url["mlflow"]},
            serving={"SLUICE_SERVING_URL": url["serving"], "SLUICE_SERVING_API_KEYS": serving_api_key},
            prefect_client={**base, **prefect, "PREFECT_HOME": str(state_dir / "prefect-client")},
        )


class Stack:
    """Starts the services one by one, recording each as soon as it runs, so that a failure half-way
    still leaves ``sluice down`` able to stop what did start."""

    def __init__(self, state_dir: Path, config: SluiceConfig, config_files: Sequence[Path] = (),
                 ports: Mapping[str, int] | None = None, say: Callable[[str], None] = print):
        self.state_dir = state_dir.resolve()
        self.config, self.config_files = config, [Path(f).resolve() for f in config_files]
        self.ports = dict(ports or DEFAULT_PORTS)
        self.say = say
        self.state = StackState(state_dir=str(self.state_dir), repository=config.lakefs.repository,
                                started_at=time.time())
        # the embedded defaults' own stores: the stack sees what the demo (or any run without servers) made
        self.lakefs_dir = config.lakefs.embedded_data_dir.resolve()
        self.mlflow_dir = config.tracking.embedded_dir.resolve()

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str], url: str, health: str) -> Service:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT, start_new_session=True)
        service = Service(name=name, pid=process.pid, url=url, log=str(log_path), health=health,
                          create_time=process_create_time(process.pid))
        self.state.services.append(service)
        self.state.save()
        return service

    def _wait_healthy(self, service: Service, timeout: float, ok: tuple[int, ...] = (200, 204)) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not process_alive(service.pid):
                raise StackError(f"{service.name} exited while starting; its log ({service.log}) ends:\n"
                                 f"{_tail(service.log)}")
            if health_status(service.health) in ok:
                return
            if time.monotonic() > deadline:
                raise StackError(f"{service.name} did not become healthy at {service.health} in {timeout:.0f} s; "
                                 f"its log ({service.log}) ends:\n{_tail(service.log)}")
            time.sleep(0.25)

    def _run(self, argv: list[str], env: Mapping[str, str], what: str, timeout: float = 300) -> str:
        done = subprocess.run(argv, env={**os.environ, **env}, cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise StackError(f"{what} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
        return done.stdout

    # ------------------------------------------------------------------ up

    def up(self) -> StackState:
        from sluice.shell.local_lakefs import load_or_create_credentials

        private_dir(self.state_dir, tighten_existing=True)
        config_file = self._write_stack_config()
        tokens = stack_secrets(self.state_dir)
        url = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        key, secret = load_or_create_credentials(self.lakefs_dir)
        variables = _Variables.for_stack(url, key, secret, tokens["serving_api_key"], self.state_dir)
        self.state.env = {**variables.lake, **variables.prefect, **variables.mlflow, **variables.serving,
                          "SLUICE_BRIDGE_URL": url["bridge"], "SLUICEGATE_HOME": str(PROJECT_ROOT),
                          "SLUICE_STACK_CONFIG": str(config_file)}

        self._start_servers(variables, tokens)
        self._start_worker_bridge_and_serving(variables, tokens, config_file)
        self.say("deploying prefect.yaml …")
        self._run([_bin("prefect"), "--no-prompt", "deploy", "--all"],
                  {**variables.prefect_client, "SLUICEGATE_HOME": str(PROJECT_ROOT)}, "prefect deploy --all")
        set_deployment_config(self.config, variables.prefect["PREFECT_API_URL"])
        self.say(f"installing the bridge's lakeFS action in {self.config.lakefs.repository} …")
        install_bridge_action(self.config, variables.lake, url["bridge"])
        self.state.save()
        return self.state

    def _write_stack_config(self) -> Path:
        """The resolved config every service and deployment uses, written to ``<state dir>/config.yaml``."""
        # the serving endpoint's state (and feedback store) and the bridge's ledger live with the stack, and the
        # deployments (export-feedback) find them there too
        self.config = self.config.model_copy(update={
            "serving": self.config.serving.model_copy(update={"state_dir": self.state_dir / "serving",
                                                              "watch_seconds": 2.0}),
            "bridge": self.config.bridge.model_copy(update={"state_file": self.state_dir / "bridge" / "emitted.db",
                                                            "reconcile_seconds": 10.0})})
        config_file = self.state_dir / "config.yaml"
        write_private(config_file, config_to_yaml(self.config))
        return config_file

    def _start_servers(self, variables: _Variables, tokens: Mapping[str, str]) -> None:
        """lakeFS, MLflow and the Prefect server (what the rest needs), started together, then awaited."""
        base, lake, url = variables.base, variables.lake, variables.url
        sluice = [sys.executable, "-m", "sluice"]
        self.say("starting lakeFS (embedded) …")
        lakefs = self._spawn("lakefs", [*sluice, "lakefs", "serve", "--data-dir", str(self.lakefs_dir),
                                        "--port", str(self.ports["lakefs"])],
                             {**base, **lake, "LAKEFSACTION_SLUICE_BRIDGE_TOKEN": tokens["bridge_token"]},
                             url["lakefs"], f"{url['lakefs']}/api/v1/healthcheck")
        self.say("starting MLflow …")
        (self.mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
        mlflow_server = self._spawn(
            "mlflow", [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                       str(self.ports["mlflow"]), "--workers", "1", "--backend-store-uri",
                       f"sqlite:///{self.mlflow_dir / 'mlflow.db'}", "--artifacts-destination",
                       str(self.mlflow_dir / "artifacts")],
            base, url["mlflow"], f"{url['mlflow']}/health")
        self.say("starting the Prefect server …")
        prefect_env = {**base, "PREFECT_HOME": str(self.state_dir / "prefect")}
        prefect_server = self._spawn(
            "prefect-server", [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                               str(self.ports["prefect"])], prefect_env, url["prefect"], f"{url['prefect']}/api/health")
        for service, timeout in ((lakefs, 30), (mlflow_server, 90), (prefect_server, 90)):
            self._wait_healthy(service, timeout)

    def _start_worker_bridge_and_serving(self, variables: _Variables, tokens: Mapping[str, str],
                                         config_file: Path) -> None:
        """The work pool and its worker, the event bridge and the serving endpoint (all need the servers)."""
        client_env, lake, mlflow, serving, url = (variables.prefect_client, variables.lake, variables.mlflow,
                                                  variables.serving, variables.url)
        sluice, with_config = [sys.executable, "-m", "sluice"], ["-c", str(config_file)]
        self.say(f"creating the work pool {WORK_POOL} …")
        self._run([_bin("prefect"), "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"],
                  client_env, "creating the work pool")
        self.say("starting the worker, the event bridge and the serving endpoint …")
        worker = self._spawn("worker", [_bin("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process"],
                             {**client_env, **lake, **mlflow, **serving, "SLUICEGATE_HOME": str(PROJECT_ROOT),
                              "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
                              "PREFECT_LOGGING_LEVEL": "INFO"}, "", "")
        bridge = self._spawn("bridge", [*sluice, "bridge", "serve", "--port", str(self.ports["bridge"]), *with_config],
                             {**client_env, **lake, "SLUICE_BRIDGE_TOKEN": tokens["bridge_token"]},
                             url["bridge"], f"{url['bridge']}/health")
        serve = self._spawn("serving", [*sluice, "serve", "--port", str(self.ports["serving"]), *with_config],
                            {**variables.base, **mlflow, **serving}, url["serving"], f"{url['serving']}/health")
        self._wait_healthy(bridge, 60)
        self._wait_healthy(serve, 90, ok=(200, 503))  # 503: up, waiting for a first @champion
        time.sleep(0.5)
        if not process_alive(worker.pid):
            raise StackError(f"the worker exited; its log ({worker.log}) ends:\n{_tail(worker.log)}")


def stack_secrets(state_dir: Path) -> dict[str, str]:
    """The bridge's shared token and the serving API key: made on the first ``up`` (in a file created 0600),
    kept for the next."""
    secrets_file = private_dir(state_dir, tighten_existing=True) / "secrets.json"
    if not secrets_file.exists():
        write_private(secrets_file, json.dumps({"bridge_token": secrets.token_urlsafe(24),
                                                "serving_api_key": "sk-sluice-" + secrets.token_urlsafe(18)}))
    return dict(json.loads(secrets_file.read_text()))


def set_deployment_config(config: SluiceConfig, api_url: str) -> None:
    """Make the stack's resolved config the default ``config`` parameter of every deployment that has one, so
    runs from events, schedules and the UI use it (the UI still lets a run change any field)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    async def update() -> None:
        async with get_client() as client:
            for deployment in await client.read_deployments():
                if "config" in (deployment.parameter_openapi_schema or {}).get("properties", {}):
                    parameters = {**deployment.parameters, "config": config.model_dump(mode="json")}
                    await client.update_deployment(deployment.id, DeploymentUpdate(parameters=parameters))

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        asyncio.run(update())


def install_bridge_action(config: SluiceConfig, lake_env: Mapping[str, str], bridge_url: str) -> str | None:
    import lakefs

    from sluice.shell.event_bridge import install_action

    client = lakefs.Client(host=lake_env["LAKECTL_SERVER_ENDPOINT_URL"],
                           username=lake_env["LAKECTL_CREDENTIALS_ACCESS_KEY_ID"],
                           password=lake_env["LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"])
    lakefs.Repository(config.lakefs.repository, client=client).create(
        storage_namespace=config.lakefs.storage_namespace, default_branch=config.lakefs.default_branch,
        exist_ok=True)
    return install_action(client, config.lakefs.repository, bridge_url, config.lakefs.default_branch)


def _tail(path: str, lines: int = 25) -> str:
    file = Path(path)
    if not file.exists():
        return "(no log)"
    return "\n".join(file.read_text(errors="replace").splitlines()[-lines:])


# ------------------------------------------------------------------ status and down


@dataclass
class ServiceStatus:
    name: str
    pid: int
    running: bool
    url: str
    health: int | None


def stack_status(state_dir: Path) -> list[ServiceStatus]:
    state = StackState.load(state_dir)
    if state is None:
        return []
    written_at = recorded_at(state_dir)
    statuses = []
    for s in state.services:
        running = is_our_process(s, written_at)
        statuses.append(ServiceStatus(s.name, s.pid, running, s.url,
                                      health_status(s.health) if s.health and running else None))
    return statuses


# what a command run beside the stack takes from it: where its services are, and the serving endpoint's key
_CLIENT_VARIABLES = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "LAKECTL_SERVER_ENDPOINT_URL",
                     "LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", "SLUICE_SERVING_URL",
                     "SLUICE_SERVING_API_KEYS")


def running_stack_env(state_dir: Path) -> dict[str, str]:
    """The client variables of the stack recorded in ``state_dir`` when its servers (lakeFS, MLflow, Prefect) are
    running; nothing otherwise. Checked by process, not by HTTP, so it costs nothing when no stack runs."""
    state = StackState.load(state_dir)
    if state is None:
        return {}
    written_at = recorded_at(state_dir)
    if not {"lakefs", "mlflow", "prefect-server"} <= {s.name for s in state.services
                                                      if is_our_process(s, written_at)}:
        return {}
    return {key: value for key, value in state.env.items() if key in _CLIENT_VARIABLES}


def stop_stack(state_dir: Path, timeout: float = 20.0, say: Callable[[str], None] = print,
               kill_wait: float = KILL_WAIT_SECONDS) -> list[str]:
    """Stop exactly the recorded services (newest first): SIGTERM to each process group, then SIGKILL
    for whatever is still there after ``timeout``, waiting at most ``kill_wait`` for it to go. A pid now held
    by another program (its start time is not the recorded one) is not signalled. The names stopped; the record
    is kept (``stack.json``) while one of ours is still there."""
    state = StackState.load(state_dir)
    if state is None:
        return []
    written_at = recorded_at(state_dir)
    stopped, survivors = [], []
    for service in reversed(state.services):
        if not process_alive(service.pid):
            continue
        if not is_our_process(service, written_at):
            say(f"{service.name}: pid {service.pid} is now another program (it started at "
                f"{_when(process_create_time(service.pid))}, ours at {_when(service.create_time)}): left alone")
            continue
        (stopped if _stop_group(service, timeout, kill_wait, say) else survivors).append(service.name)
    if survivors:  # keep the record: `sluice down` again, once they are gone, or `sluice status`
        say(f"still running: {', '.join(survivors)}; the record stays in {state_dir / 'stack.json'}")
    else:
        (state_dir / "stack.json").rename(state_dir / "stack.stopped.json")
    return stopped


def _stop_group(service: Service, timeout: float, kill_wait: float, say: Callable[[str], None]) -> bool:
    """SIGTERM, then SIGKILL, to the service's process group; whether its process is gone."""
    _signal_group(service.pid, signal.SIGTERM)
    if not _wait_gone(service.pid, timeout):  # `prefect worker start` survives the first SIGTERM
        say(f"{service.name} (pid {service.pid}) ignored SIGTERM for {timeout:.0f} s: SIGKILL")
        _signal_group(service.pid, signal.SIGKILL)
        if not _wait_gone(service.pid, kill_wait):
            say(f"{service.name} (pid {service.pid}) is still there {kill_wait:.0f} s after SIGKILL (stuck in the "
                f"kernel, or not its group's leader): check it with `ps -o pid,stat,cmd -g {service.pid}`")
            return False
    _signal_group(service.pid, signal.SIGKILL)  # children left in its group (flow runs, uvicorn workers)
    return True


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _when(timestamp: float | None) -> str:
    return "an unknown time" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)  # each service leads its own session, so its group id is its pid
    except ProcessLookupError:
        pass
