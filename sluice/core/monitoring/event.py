"""The ``sluice.monitor.drift`` event, as plain data: the tasks emit it, prefect.yaml's triggers match it,
and the tests check one against the other.

- resource ``sluice.model.<model name>``, labelled with the version and with ``sluice.monitor.on-drift``
  (``run-pipeline`` or ``notify``, from ``monitoring.on_drift``): the shipped triggers match that label, so
  the configured reaction, and only it, starts;
- payload: the window, the version, its data commit, the reasons (a list and one text), the figures and the
  MLflow monitoring run;
- id: derived from the model, version and window, so one window is one event: a repeat is the same event,
  which Prefect stores once.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel

from sluice.core.monitoring.report import MonitoringReport, report_metrics

DRIFT_EVENT = "sluice.monitor.drift"
RESOURCE_PREFIX = "sluice.model."
ON_DRIFT_LABEL = "sluice.monitor.on-drift"
VERSION_LABEL = "sluice.model.version"


class DriftEvent(BaseModel):
    event: str
    id: str
    resource: dict[str, str]
    payload: dict[str, Any]


def drift_event_id(model_name: str, version: str, report: MonitoringReport) -> str:
    key = f"{DRIFT_EVENT}/{model_name}/{version}/{report.window.start.isoformat()}/{report.window.end.isoformat()}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def drift_event(report: MonitoringReport, reasons: list[str], on_drift: Literal["run-pipeline", "notify"],
                monitoring_run: str | None) -> DriftEvent:
    if not reasons:
        raise ValueError("a drift event needs at least one reason")
    return DriftEvent(
        event=DRIFT_EVENT, id=drift_event_id(report.model_name, report.version, report),
        resource={"prefect.resource.id": f"{RESOURCE_PREFIX}{report.model_name}",
                  "prefect.resource.name": report.model_name, VERSION_LABEL: report.version,
                  ON_DRIFT_LABEL: on_drift},
        payload={"model": report.model_name, "version": report.version, "data_commit": report.data_commit,
                 "window_start": report.window.start.isoformat(), "window_end": report.window.end.isoformat(),
                 "window": report.window.label(), "reasons": reasons, "reasons_text": "\n".join(reasons),
                 "metrics": report_metrics(report), "monitoring_run": monitoring_run or "", "on_drift": on_drift})
