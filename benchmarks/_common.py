"""What the benchmark scripts share: the machine they ran on, an offline and
quiet environment, and a fresh embedded lakeFS with LAKECTL_* pointing at it."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

BENCH_KEY, BENCH_SECRET = "AKIABENCH", "bench-secret"


def machine(packages: Iterable[str], **extra: object) -> dict:
    """CPUs, memory, platform and the versions of the packages that matter to the figures."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    memory = None
    meminfo = Path("/proc/meminfo")
    for line in meminfo.read_text().splitlines() if meminfo.exists() else []:
        if line.startswith("MemTotal:"):
            memory = round(int(line.split()[1]) * 1024 / 1e9, 1)
    return {"cpu_count": cpus, "memory_gb": memory, "platform": platform.platform(),
            "python": platform.python_version(), **extra, "packages": {p: version(p) for p in packages}}


def quiet_offline_environment() -> None:
    """No hub, no telemetry, warnings only, and no MLflow server from the caller's shell."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@contextmanager
def embedded_lakefs(data_dir: Path) -> Iterator[str]:
    """A fresh embedded lakeFS-compatible server; its URL, with LAKECTL_* set for the SDK."""
    from sluice.shell.local_lakefs import EmbeddedLakeFS

    server = EmbeddedLakeFS(data_dir, port=0, credentials=(BENCH_KEY, BENCH_SECRET))
    endpoint = server.start()
    os.environ.update({"LAKECTL_SERVER_ENDPOINT_URL": endpoint.url, "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": BENCH_KEY,
                       "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": BENCH_SECRET})
    try:
        yield endpoint.url
    finally:
        server.stop()


def emit_report(report: dict, path: Path | None) -> None:
    """The JSON report to stdout, and to ``path`` when one is given."""
    import json

    text = json.dumps(report, indent=2)
    print(text)
    if path:
        path.write_text(text)
