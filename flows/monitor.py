"""Watch the served model's live traffic: does it still look like what the model was trained on?

1. Take the window (``monitoring.window_minutes``, aligned to the epoch; by default the last complete one).
2. Find the version the serving alias points at, and through its lineage tags the lakeFS commit of its
   training data. A window already judged for that version (a finished monitoring run) is not judged again.
3. Read the serving request log (``<serving.state_dir>/requests.jsonl``, PII redacted) for the window, the
   feedback on those answers, and the training prompts at the data commit; compute prompt length drift,
   MiniLM embedding drift, the out-of-domain share and the answer-side signals; decide with ``drifted``.
4. Record the window as an MLflow monitoring run, its figures also on the served version's logged model.
5. A crossed threshold emits ``sluice.monitor.drift`` once for the window; prefect.yaml's triggers turn it
   into a pipeline run (``monitoring.on_drift: run-pipeline``) or a notification (``notify``).
6. Report: a markdown artifact with the figures, the reasons and a plot of prompt lengths.

Also here: ``notify_drift``, the flow the ``notify`` reaction runs.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger

from sluice.core.config import SluiceConfig
from sluice.core.data.feedback import FEEDBACK_DB
from sluice.core.monitoring.event import drift_event
from sluice.core.monitoring.markdown import monitoring_markdown, notification_markdown
from sluice.core.monitoring.record import decision_of
from sluice.core.monitoring.report import MonitoringOutcome, drifted
from sluice.core.monitoring.traffic import aligned_window
from sluice.core.request_log import REQUEST_LOG
from tasks.lakefs import pin_published_data
from tasks.monitor import (
    compute_report,
    emit_drift,
    find_prior_window,
    find_served_version,
    finish_window,
    record_window,
    report_monitoring,
    report_notification,
)
from tasks.registry import resolve_tracking_target



@flow(name="monitor", log_prints=True)
def monitor(window_end: datetime | None = None, request_log: str | None = None, feedback_db: str | None = None,
            config: SluiceConfig = SluiceConfig()) -> MonitoringOutcome:  # noqa: B008 (a form default)
    """Compare one window of live traffic with the served version's training data.

    Args:
        window_end: End of the window (empty: the last complete window before now).
        request_log: The serving request log (empty: <serving.state_dir>/requests.jsonl).
        feedback_db: The serving feedback store (empty: <serving.state_dir>/feedback.db).
        config: Every setting; monitoring.* says how, serving.alias which version.
    """
    settings = config.monitoring
    window = aligned_window(settings.window_minutes, window_end)
    target = resolve_tracking_target(config.tracking)
    served = find_served_version(target, config.registry.model_name, config.serving.alias, config.lakefs.repository)
    logger = get_run_logger()
    if served is None:
        outcome = MonitoringOutcome(window=window, version=None, decision="nothing served")
        logger.info(outcome.summary())
        return outcome
    prior = find_prior_window(target, served, window)
    if prior is not None:
        outcome = MonitoringOutcome(window=window, version=served.version, decision=prior.decision,
                                    reasons=prior.reasons, monitoring_run=prior.run_id, event_id=prior.event_id,
                                    judged_before=True)
        logger.info("%s, in monitoring run %s", outcome.summary(), prior.run_id)
        return outcome
    training = pin_published_data(served.repository, served.data_commit, served.kind, config.data.datasets_prefix,
                                  str(config.data.work_dir / "datasets"))
    report = compute_report(request_log or str(config.serving.state_dir / REQUEST_LOG),
                            feedback_db or str(config.serving.state_dir / FEEDBACK_DB), window, served, training,
                            settings)
    reasons = drifted(report, settings.thresholds)
    run_id = record_window(target, served, report, reasons,
                           monitoring_markdown(report, reasons, settings.thresholds))
    # the event before the run is finished: a run that dies in between is redone, and the event's id is the
    # window's, so Prefect keeps one
    event_id = emit_drift(drift_event(report, reasons, settings.on_drift, run_id)) if reasons else None
    finish_window(target, run_id, event_id)
    outcome = MonitoringOutcome(window=window, version=served.version, decision=decision_of(report, reasons),
                                reasons=reasons, monitoring_run=run_id, event_id=event_id)
    report_monitoring(monitoring_markdown(report, reasons, settings.thresholds, run_id, event_id), outcome.summary())
    logger.info(outcome.summary())
    return outcome


@flow(name="notify-drift", log_prints=True)
def notify_drift(model: str, version: str, window: str, reasons: str, monitoring_run: str = "") -> str:
    """The ``notify`` reaction to sluice.monitor.drift: a warning in the run's log and a markdown artifact
    (attach a Prefect notification to this flow's runs to forward it to chat or mail)."""
    lines = [reason for reason in reasons.splitlines() if reason.strip()]
    summary = f"{model} version {version} drifted in {window}"
    get_run_logger().warning("%s: %s", summary, "; ".join(lines))
    report_notification(notification_markdown(model, version, window, lines, monitoring_run), summary)
    return summary
