"""The monitor in MLflow: which version is served and what it was trained on (its lineage tags), and each
window as a monitoring run.

A monitoring run lives in the experiment ``<experiment>-monitoring``, one per (version, window), tagged with
the version, its data commit and training run, and the flow run. Its figures (``monitor.*``) are logged with
the served version's logged model id, so they are metrics *of the served version* too: the MLflow UI's
"Logged models" page charts them window after window (step: the window's end, in minutes since the epoch).
The run is finished only after its drift event went out, so a finished run means "this window is done":
a rerun finds it and neither computes nor emits again.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from sluice.core import lineage
from sluice.core.errors import ExplainedError
from sluice.core.monitoring.report import MonitoringReport, report_metrics
from sluice.core.monitoring.traffic import Window
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.logged_model import find_logged_model
from sluice.core.registry.tracking import TrackingTarget, ensure_experiment, mlflow_client

MONITOR_WINDOW = "sluice.monitor.window"  # <model>/<version>/<start>/<end>: the one run of a window
MONITOR_EVENT = "sluice.monitor.event"  # the drift event's id, when one was emitted
REPORT_ARTIFACT = "monitor/report.md"


class VersionWithoutLineage(ExplainedError, LookupError):
    """The served version carries no data commit: it was registered outside the pipeline."""


class ServedVersion(BaseModel):
    """The version an alias serves, with the lineage the monitor follows to its training data."""

    model_name: str
    alias: str
    version: str
    repository: str
    data_commit: str
    training_run: str | None
    kind: str  # the published data it trained on: sft or preference
    logged_model_id: str | None


class PriorWindow(BaseModel):
    """A window judged before (a finished monitoring run)."""

    run_id: str
    decision: str
    reasons: list[str]
    event_id: str | None


def monitoring_experiment(target: TrackingTarget) -> str:
    return f"{target.experiment}-monitoring"


def served_version(target: TrackingTarget, model_name: str, alias: str, default_repository: str) -> ServedVersion | None:
    """The version ``alias`` points at and its training data (None when nothing is served yet)."""
    registry = ModelRegistry(target, model_name)
    version = registry.alias_version(alias)
    if version is None:
        return None
    registered = registry.client.get_model_version(model_name, version)
    tags = dict(registered.tags or {})
    if not tags.get(lineage.DATA_COMMIT):
        raise VersionWithoutLineage(
            f"{model_name} version {version} (@{alias}) has no {lineage.DATA_COMMIT} tag: the monitor cannot find "
            "its training data. Versions registered by the pipeline carry it; tag this one with the lakeFS commit "
            "it was trained on")
    training_run = tags.get(lineage.TRAINING_RUN) or registered.run_id
    kind = "sft"
    if training_run:
        kind = registry.client.get_run(training_run).data.tags.get(lineage.KIND, "sft")
    model_id = getattr(registered, "model_id", None)
    if not model_id and training_run:
        logged = find_logged_model(target, training_run)
        model_id = str(logged.model_id) if logged is not None else None
    return ServedVersion(model_name=model_name, alias=alias, version=str(version),
                         repository=tags.get(lineage.REPOSITORY) or default_repository,
                         data_commit=tags[lineage.DATA_COMMIT], training_run=training_run, kind=kind,
                         logged_model_id=model_id)


def window_key(served: ServedVersion, window: Window) -> str:
    return f"{served.model_name}/{served.version}/{window.start.isoformat()}/{window.end.isoformat()}"


def _window_runs(target: TrackingTarget, served: ServedVersion, window: Window) -> list[Any]:
    client = mlflow_client(target.tracking_uri)
    experiment = ensure_experiment(target, monitoring_experiment(target))
    return list(client.search_runs([experiment], filter_string=f"tags.`{MONITOR_WINDOW}` = "
                                   f"'{window_key(served, window)}'"))


def find_prior_window(target: TrackingTarget, served: ServedVersion, window: Window) -> PriorWindow | None:
    """The finished monitoring run of this window, if it was judged before."""
    for run in _window_runs(target, served, window):
        if run.info.status == "FINISHED":
            tags = run.data.tags
            return PriorWindow(run_id=run.info.run_id, decision=tags.get(lineage.DECISION, ""),
                               reasons=[r for r in tags.get(lineage.DECISION_REASONS, "").split("\n") if r],
                               event_id=tags.get(MONITOR_EVENT))
    return None


def decision_of(report: MonitoringReport, reasons: list[str]) -> str:
    return "too few requests" if report.too_few_requests else "drift" if reasons else "no drift"


def record_window(target: TrackingTarget, served: ServedVersion, report: MonitoringReport, reasons: list[str],
                  markdown: str, flow_run: lineage.FlowRun) -> str:
    """A (running) monitoring run with the window's figures, also logged on the version's logged model; its
    id. An unfinished run of the same window (a run that died before its event) is marked failed."""
    from mlflow.entities import Metric, Param

    client = mlflow_client(target.tracking_uri)
    for stale in _window_runs(target, served, report.window):
        if stale.info.status != "FINISHED":
            client.set_terminated(stale.info.run_id, "FAILED")
    tags = {lineage.STAGE: "monitoring", lineage.MODEL_VERSION: served.version, lineage.DATA_COMMIT: served.data_commit,
            lineage.REPOSITORY: served.repository, lineage.TRAINING_RUN: served.training_run or "",
            lineage.FLOW_RUN_ID: flow_run.id, MONITOR_WINDOW: window_key(served, report.window),
            lineage.DECISION: decision_of(report, reasons), lineage.DECISION_REASONS: "\n".join(reasons)[:5000],
            lineage.RUN_NAME: f"monitor-v{served.version}-{report.window.end:%Y%m%dT%H%M}"}
    run = client.create_run(ensure_experiment(target, monitoring_experiment(target)),
                            tags={k: v for k, v in tags.items() if v})
    stamp = int(report.window.end.timestamp() * 1000)
    step = int(report.window.end.timestamp() // 60)
    client.log_batch(run.info.run_id,
                     metrics=[Metric(k, float(v), stamp, step, model_id=served.logged_model_id)
                              for k, v in report_metrics(report).items()],
                     params=[Param("monitor.window_start", report.window.start.isoformat()),
                             Param("monitor.window_end", report.window.end.isoformat()),
                             Param("monitor.alias", served.alias), Param("monitor.data_kind", served.kind)])
    client.log_text(run.info.run_id, markdown, REPORT_ARTIFACT)
    return str(run.info.run_id)


def finish_window(target: TrackingTarget, run_id: str, event_id: str | None) -> None:
    """The window is done: its event (if any) went out."""
    client = mlflow_client(target.tracking_uri)
    if event_id:
        client.set_tag(run_id, MONITOR_EVENT, event_id)
    client.set_terminated(run_id, "FINISHED", end_time=int(time.time() * 1000))
