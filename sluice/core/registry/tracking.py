"""MLflow: where runs go (a server, or the embedded store), and finding runs.

The server comes from ``MLFLOW_TRACKING_URI``; without it runs go to a local
sqlite store (``tracking.embedded_dir``/mlflow.db) with artifacts beside it.
A direct sqlite store has no default artifact folder (MLflow would fall back
to ``./mlruns`` of whatever directory the first process ran in), so
Sluicegate creates its experiments with an explicit artifact location, under
a file lock: processes opening a brand-new sqlite file at the same moment
otherwise race in MLflow's schema migration.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sluice.core.config import TrackingConfig

# Quiet and offline by default; a user's own settings win.
_QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}
PARAM_VALUE_LIMIT = 6000  # MLflow 3's limit on a param value


def quiet_mlflow() -> None:
    for key, value in _QUIET.items():
        os.environ.setdefault(key, value)


class TrackingTarget(BaseModel):
    """Where runs go: an MLflow store and the experiment in it. Resolved once
    per flow run and handed to every task that tracks or registers."""

    model_config = ConfigDict(frozen=True)

    tracking_uri: str
    artifact_root: str | None  # for experiments Sluicegate creates on the embedded store
    embedded: bool
    experiment: str

    @property
    def ledger_experiment(self) -> str:
        """The experiment whose runs record the registry's alias moves."""
        return f"{self.experiment}-registry-ledger"


def tracking_target(config: TrackingConfig) -> TrackingTarget:
    """The MLflow server from ``MLFLOW_TRACKING_URI``, or the embedded store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return TrackingTarget(tracking_uri=uri, artifact_root=None, embedded=False, experiment=config.experiment)
    root = config.embedded_dir.resolve()
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    return TrackingTarget(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=(root / "artifacts").as_uri(),
                          embedded=True, experiment=config.experiment)


def mlflow_client(tracking_uri: str):  # type: ignore[no-untyped-def]
    """A client on an explicit store: never ``mlflow.set_tracking_uri()``, which is process-wide."""
    quiet_mlflow()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_experiment(target: TrackingTarget, name: str | None = None) -> str:
    """Get or create the experiment (default: the target's); its id. Safe when
    several processes do it at once on a new embedded store."""
    from mlflow.exceptions import MlflowException

    name = name or target.experiment

    def get_or_create() -> str:
        client = mlflow_client(target.tracking_uri)
        found = client.get_experiment_by_name(name)  # the first call creates or migrates the schema
        if found is not None:
            return str(found.experiment_id)
        location = f"{target.artifact_root.rstrip('/')}/{name}" if target.artifact_root else None
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException:  # another process created it meanwhile: use theirs
            created = client.get_experiment_by_name(name)
            if created is None:
                raise
            return str(created.experiment_id)

    if target.tracking_uri.startswith("sqlite:///"):
        with _locked(Path(target.tracking_uri.removeprefix("sqlite:///")).with_suffix(".lock")):
            return get_or_create()
    return get_or_create()


def flatten(model: BaseModel | Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``{dotted.key: text}``, for MLflow params."""
    data = model.model_dump(mode="json") if isinstance(model, BaseModel) else dict(model)
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            flat[name] = text[:PARAM_VALUE_LIMIT]
    return flat


def config_hash(*parts: BaseModel | Mapping[str, Any] | str) -> str:
    """A stable hash of resolved settings (and any extra identifying text)."""
    canonical = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts]
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


def find_finished_run(target: TrackingTarget, experiment_id: str, tag: str, value: str) -> str | None:
    """The newest finished run carrying ``tag == value`` (e.g. a training key), if any."""
    runs = mlflow_client(target.tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def download_run_model(target: TrackingTarget, run_id: str, into: str | Path) -> str:
    """A training run's merged model (its ``model/`` artifact) in a local folder; a run's artifacts never
    change, so a folder already there is used as is."""
    import mlflow

    folder = Path(into) / run_id
    if (folder / "model" / "config.json").exists():
        return str(folder / "model")
    return str(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model", dst_path=str(folder),
                                                   tracking_uri=target.tracking_uri))
