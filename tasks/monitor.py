"""Monitoring tasks: find the served version and its training data, compute one window's report, record it
in MLflow, publish it as an artifact, and emit the drift event. The work is in ``sluice.core.monitoring``;
the report is computed inside one task so that the window's prompts never travel as task results."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from sluice.core.config.monitoring import MonitoringConfig
from sluice.core.lake.published import PublishedData
from sluice.core.monitoring import record
from sluice.core.monitoring.event import DriftEvent
from sluice.core.monitoring.report import MonitoringReport, build_report
from sluice.core.monitoring.traffic import Window, read_window, training_prompts
from sluice.core.request_log import latest_ratings
from sluice.core.registry.tracking import TrackingTarget
from tasks import UNCACHED, current_flow_run

find_served_version = task(record.served_version, name="find-served-version", **UNCACHED)
find_prior_window = task(record.find_prior_window, name="find-prior-window", **UNCACHED)
finish_window = task(record.finish_window, name="finish-monitoring-run", **UNCACHED)


@task(name="compute-monitoring-report", **UNCACHED)
def compute_report(request_log: str, feedback_db: str, window: Window, served: record.ServedVersion,
                   training: PublishedData, settings: MonitoringConfig) -> MonitoringReport:
    """The window's traffic of the served version against its training prompts (MiniLM on at most
    ``settings.sample_size`` prompts per side)."""
    from sluice.core.evaluation.metrics.embeddings import default_embedder

    traffic = read_window(Path(request_log), window, served.version)
    ratings = list(latest_ratings(Path(feedback_db), traffic.response_ids).values())
    prompts = training_prompts(training.local_files)
    get_run_logger().info("window %s: %d request(s) answered by version %s (%d by others, %d errors), %d "
                          "rating(s); %d training prompt(s) at %s", window.label(), len(traffic.prompts),
                          served.version, traffic.other_versions, traffic.errors, len(ratings), len(prompts),
                          training.uri)
    return build_report(traffic, prompts, ratings, default_embedder().embed, settings,
                        model_name=served.model_name, data_commit=served.data_commit)


@task(name="record-monitoring-run", **UNCACHED)
def record_window(target: TrackingTarget, served: record.ServedVersion, report: MonitoringReport, reasons: list[str],
                  markdown: str) -> str:
    return record.record_window(target, served, report, reasons, markdown, current_flow_run())


@task(name="report-monitoring", **UNCACHED)
def report_monitoring(markdown: str, summary: str) -> None:
    create_markdown_artifact(markdown=markdown, key="monitor", description=summary)


@task(name="emit-drift-event", **UNCACHED)
def emit_drift(event: DriftEvent) -> str:
    """Send ``sluice.monitor.drift`` (its id is the window's: a repeat is the same event)."""
    emit_event(event=event.event, resource=event.resource, payload=event.payload, id=UUID(event.id))
    get_run_logger().warning("%s for %s version %s: %s", event.event, event.payload["model"],
                             event.payload["version"], "; ".join(event.payload["reasons"]))
    return event.id


@task(name="report-drift-notification", **UNCACHED)
def report_notification(markdown: str, summary: str) -> None:
    create_markdown_artifact(markdown=markdown, key="drift-notification", description=summary)
