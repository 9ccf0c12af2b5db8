"""The embedded lakeFS-compatible server as a child process.

``lakefs_environment`` is how every command finds lakeFS: if
``LAKECTL_SERVER_ENDPOINT_URL`` is set, that server is used as is (real
lakeFS in production); otherwise the embedded server is started on a free
loopback port, with credentials kept in its data directory, and the standard
``LAKECTL_*`` variables are set for the duration so the official SDK — and
any child process — finds it exactly as it would find real lakeFS.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sluice.core.config import ConfigError, Environment, LakeFSConfig
from sluice.core.errors import ExplainedError
from sluice.core.private_files import private_dir

CREDENTIALS_FILE = "credentials.json"
_ENV_KEYS = (
    "LAKECTL_SERVER_ENDPOINT_URL",
    "LAKECTL_CREDENTIALS_ACCESS_KEY_ID",
    "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY",
)


@dataclass(frozen=True)
class LakeFSEndpoint:
    url: str
    access_key_id: str
    secret_access_key: str
    embedded: bool

    def __repr__(self) -> str:  # never print the secret
        return f"LakeFSEndpoint(url={self.url!r}, access_key_id={self.access_key_id!r}, embedded={self.embedded})"


class EmbeddedLakeFSError(ExplainedError, RuntimeError):
    pass


def load_or_create_credentials(data_dir: Path) -> tuple[str, str]:
    """Credentials of an embedded server's data directory, created on first use
    (readable by the owner only, in a folder created 0700)."""
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        stored = json.loads(path.read_text())
        return stored["access_key_id"], stored["secret_access_key"]
    private_dir(data_dir)  # it holds the credentials and the repositories' content
    access_key_id = "AKIASLUICE" + secrets.token_hex(5).upper()
    secret = secrets.token_urlsafe(30)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"access_key_id": access_key_id, "secret_access_key": secret}, handle)
    return access_key_id, secret


class EmbeddedLakeFS:
    """Runs ``sluice lakefs serve`` on ``data_dir`` until stopped."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: tuple[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.host, self.port = host, port
        self.credentials = credentials
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0
        self.endpoint: LakeFSEndpoint | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self, timeout: float = 30.0, while_starting: Callable[[], object] | None = None) -> LakeFSEndpoint:
        """Start the server and wait until it answers; ``while_starting`` runs meanwhile (e.g. the caller's own
        imports: the server's start-up is another process's work)."""
        private_dir(self.data_dir)
        key, secret = self.credentials or load_or_create_credentials(self.data_dir)
        ready = self.data_dir / f"ready-{os.getpid()}-{secrets.token_hex(3)}.json"
        env = {**os.environ, **self.extra_env,
               "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": key, "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": secret}
        command = [sys.executable, "-m", "sluice", "lakefs", "serve", "--data-dir", str(self.data_dir),
                   "--host", self.host, "--port", str(self.port), "--ready-file", str(ready)]
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()  # the log is kept across starts: a failure shows this start's lines only
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        if while_starting is not None:
            while_starting()
        deadline = time.monotonic() + timeout
        try:
            while not ready.exists():
                if self.process.poll() is not None:
                    raise EmbeddedLakeFSError(
                        f"the embedded lakeFS server did not start (exit code {self.process.returncode}); its log "
                        f"{self.log_path} says:\n{self._log_tail()}"
                    )
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedLakeFSError(f"the embedded lakeFS server did not start in {timeout:.0f} s:\n"
                                              f"{self._log_tail()}")
                time.sleep(0.05)
            url = json.loads(ready.read_text())["endpoint"]
        finally:
            ready.unlink(missing_ok=True)
        self.endpoint = LakeFSEndpoint(url, key, secret, embedded=True)
        wait_until_healthy(url, timeout=max(deadline - time.monotonic(), 1.0))
        return self.endpoint

    def _log_tail(self, lines: int = 20) -> str:
        """The last lines this start wrote to the server's log."""
        if not self.log_path.exists():
            return "(no log)"
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            written = log.read().decode(errors="replace").splitlines()
        return "\n".join(written[-lines:]) or "(nothing in the log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: what a crash looks like (tests use it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> LakeFSEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/healthcheck", timeout=2) as response:
                if response.status == 204:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise EmbeddedLakeFSError(f"lakeFS at {url} did not answer its health check in {timeout:.0f} s")
        time.sleep(0.05)


@contextmanager
def lakefs_environment(config: LakeFSConfig,
                       while_starting: Callable[[], object] | None = None) -> Iterator[LakeFSEndpoint]:
    """lakeFS from the environment, or the embedded server for the duration (``while_starting`` runs while it
    starts, or at once when lakeFS is already there)."""
    env = Environment.from_os()
    if env.lakefs_endpoint:
        if not env.lakefs_access_key_id or env.lakefs_secret_access_key is None:
            raise ConfigError([
                "LAKECTL_SERVER_ENDPOINT_URL is set but LAKECTL_CREDENTIALS_ACCESS_KEY_ID and "
                "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY are not: set both, or unset the endpoint to use the "
                "embedded server"
            ])
        if while_starting is not None:
            while_starting()
        yield LakeFSEndpoint(env.lakefs_endpoint, env.lakefs_access_key_id,
                             env.lakefs_secret_access_key.get_secret_value(), embedded=False)
        return
    server = EmbeddedLakeFS(config.embedded_data_dir, port=config.embedded_port)
    endpoint = server.start(while_starting=while_starting)
    saved = {key: os.environ.get(key) for key in _ENV_KEYS}
    os.environ.update({
        "LAKECTL_SERVER_ENDPOINT_URL": endpoint.url,
        "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": endpoint.access_key_id,
        "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": endpoint.secret_access_key,
    })
    try:
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
