"""prefect.yaml is data: every deployment must load, validate and be wired
to the events the bridge emits, before `prefect deploy --all` ever runs."""

from __future__ import annotations

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.events.schemas.events import Resource
from prefect.flows import load_flow_from_entrypoint

from sluice.core.config import LakeFSConfig
from sluice.shell.event_bridge import event_from_webhook
from tests.conftest import REPO_ROOT

PREFECT_YAML = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in PREFECT_YAML["deployments"]}
COMMIT = "ab" * 32


def _event(event_type: str, branch: str) -> tuple[str, Resource]:
    event = event_from_webhook({"event_type": event_type, "repository_id": LakeFSConfig().repository,
                                "branch_id": branch, "commit_id": COMMIT})
    assert event is not None
    return event.event, Resource.model_validate(event.to_prefect()["resource"])


def _triggered(event_type: str, branch: str) -> list[str]:
    name, resource = _event(event_type, branch)
    return sorted(d["name"] for d in DEPLOYMENTS.values() for t in d.get("triggers", [])
                  if name in DeploymentEventTrigger(**t).expect and DeploymentEventTrigger(**t).match.matches(resource))


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_every_entrypoint_resolves_and_every_default_validates(name):
    deployment = DEPLOYMENTS[name]
    flow = load_flow_from_entrypoint(str(REPO_ROOT / deployment["entrypoint"]))
    flow.validate_parameters(deployment.get("parameters") or {})  # raises on a missing or invalid parameter
    assert deployment["work_pool"]["name"] == "sluicegate-process"
    for trigger in deployment.get("triggers", []):
        parsed = DeploymentEventTrigger(**trigger)
        assert set(parsed.parameters or {}) <= set(flow.parameters.properties), "a trigger sets an unknown parameter"
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))


def test_a_merge_into_main_starts_the_pipeline_and_nothing_else():
    assert _triggered("post-merge", "main") == ["pipeline-on-merge"]
    trigger = DEPLOYMENTS["pipeline-on-merge"]["triggers"][0]
    assert trigger["parameters"] == {"commit_id": "{{ event.payload.commit_id }}"}


def test_a_commit_on_an_incoming_branch_starts_validation_and_nothing_else():
    assert _triggered("post-commit", "incoming-batch-1") == ["validate-incoming"]
    assert _triggered("post-commit", "ingest-sft-1") == []  # the ingest flow's own branches start nothing
    assert _triggered("post-commit", "main") == []
    assert _triggered("post-merge", "incoming-batch-1") == []


def test_the_nightly_retrain_is_scheduled_and_pausable():
    (schedule,) = DEPLOYMENTS["pipeline"]["schedules"]
    assert schedule["cron"] == "0 3 * * *" and schedule["active"] is True
    assert DEPLOYMENTS["pipeline"]["parameters"]["data_ref"] == "main"


def _drift_event(on_drift: str):  # type: ignore[no-untyped-def]
    """The monitor's drift event for one window, as the flow builds it."""
    from datetime import UTC, datetime, timedelta

    from sluice.core.monitoring.event import drift_event
    from sluice.core.monitoring.report import MonitoringReport
    from sluice.core.monitoring.statistics import AnswerSignals
    from sluice.core.monitoring.traffic import Window

    end = datetime(2026, 12, 7, 12, tzinfo=UTC)
    report = MonitoringReport(window=Window(start=end - timedelta(hours=1), end=end), model_name="sluicegate-model",
                              version="7", data_commit=COMMIT, requests=40, other_versions=0, errors=0,
                              training_prompts=600, answers=AnswerSignals(answers=40, empty_share=0.5,
                                                                          refusal_share=0, ratings=0,
                                                                          mean_rating=None))
    return drift_event(report, ["empty answers: 50% > 10%", "refusals: 30% > 20%"], on_drift, "run-1")


def _triggered_by_drift(on_drift: str) -> list[str]:
    event = _drift_event(on_drift)
    resource = Resource.model_validate(event.resource)
    return sorted(d["name"] for d in DEPLOYMENTS.values() for t in d.get("triggers", [])
                  if event.event in DeploymentEventTrigger(**t).expect
                  and DeploymentEventTrigger(**t).match.matches(resource))


@pytest.mark.parametrize(("on_drift", "deployment"), [("run-pipeline", "pipeline-on-drift"),
                                                      ("notify", "notify-drift")])
def test_a_drift_event_starts_the_configured_reaction_and_nothing_else(on_drift, deployment):
    assert _triggered_by_drift(on_drift) == [deployment]


def test_the_notification_is_rendered_from_the_drift_events_payload():
    import jinja2

    event = _drift_event("notify")
    (trigger,) = DEPLOYMENTS["notify-drift"]["triggers"]
    rendered = {name: jinja2.Template(template).render(event={"payload": event.payload})
                for name, template in trigger["parameters"].items()}
    assert rendered == {"model": "sluicegate-model", "version": "7", "window": event.payload["window"],
                        "reasons": "empty answers: 50% > 10%\nrefusals: 30% > 20%", "monitoring_run": "run-1"}
    flow = load_flow_from_entrypoint(str(REPO_ROOT / DEPLOYMENTS["notify-drift"]["entrypoint"]))
    flow.validate_parameters(rendered)


def test_the_monitor_runs_hourly_just_after_the_window_it_judges_closes():
    (schedule,) = DEPLOYMENTS["monitor"]["schedules"]
    assert schedule["cron"] == "5 * * * *" and schedule["active"] is True
    assert DEPLOYMENTS["pipeline-on-drift"]["entrypoint"] == "flows/pipeline.py:pipeline"
