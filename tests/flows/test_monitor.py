"""The monitor flow against real parts: the demo data in the embedded lakeFS, a registered @champion whose
lineage tags name that data commit in a real MLflow store, a request log and feedback store written by the
server's own writers, and a real Prefect API that stores the events and runs the shipped automation
(prefect.yaml's pipeline-on-drift trigger, applied as `prefect deploy` would)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from flows.monitor import monitor
from sluice.core import lineage
from sluice.core.config import DataConfig, RegistryConfig, ServingConfig, SluiceConfig, TrackingConfig
from sluice.core.config.monitoring import MonitoringConfig
from sluice.core.monitoring.event import DRIFT_EVENT
from sluice.core.registry.client import CHAMPION, ModelRegistry
from sluice.core.registry.logged_model import LOGGED_MODEL_NAME
from sluice.core.registry.tracking import ensure_experiment, mlflow_client, tracking_target
from tests.conftest import REPO_ROOT, latest_artifact
from tests.monitoring_traffic import other_topics, short_questions, training_distribution, write_requests

pytestmark = pytest.mark.slow

STEADY_END = datetime(2026, 12, 7, 11, tzinfo=UTC)  # the window 10:00-11:00: traffic like the training data
SHIFTED_END = datetime(2026, 12, 7, 12, tzinfo=UTC)  # 11:00-12:00: other topics and other lengths


@pytest.fixture(scope="module")
def served(published, tmp_path_factory):  # type: ignore[no-untyped-def]
    """@champion of a registered model whose version (and logged model) names the demo data commit."""
    lake, commit = published
    root = tmp_path_factory.mktemp("monitor")
    config = SluiceConfig(lakefs=lake, data=DataConfig(work_dir=root / "work"),
                          tracking=TrackingConfig(embedded_dir=root / "mlflow"),
                          registry=RegistryConfig(model_name="monitored-model"),
                          serving=ServingConfig(state_dir=root / "serving"),
                          monitoring=MonitoringConfig(sample_size=64, permutations=200))
    target = tracking_target(config.tracking)
    client = mlflow_client(target.tracking_uri)
    experiment = ensure_experiment(target)
    run = client.create_run(experiment, tags=lineage.training_run_tags(
        lineage.FlowRun(), key="k", repository=lake.repository, data_commit=commit,
        data_uri=f"lakefs://{lake.repository}/{commit}/datasets/sft/clean/", kind="sft", config_hash="h",
        run_name="train"))
    logged = client.create_logged_model(experiment, name=LOGGED_MODEL_NAME, source_run_id=run.info.run_id)
    client.finalize_logged_model(logged.model_id, "READY")
    registry = ModelRegistry(target, config.registry.model_name)
    version = registry.register(run.info.run_id, lineage.model_version_tags(
        lineage.FlowRun(), repository=lake.repository, data_commit=commit, training_run=run.info.run_id,
        evaluation_run="", config_hash="h", training_key="k")).version
    registry.set_alias(CHAMPION, version)
    return config, version, logged.model_id


def _apply_shipped_drift_trigger() -> str:
    """prefect.yaml's pipeline-on-drift deployment and its automation, on the test API."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.flows import load_flow_from_entrypoint

    spec = next(d for d in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
                if d["name"] == "pipeline-on-drift")
    flow = load_flow_from_entrypoint(str(REPO_ROOT / spec["entrypoint"]))
    deployment = flow.to_deployment(name=spec["name"], parameters=spec["parameters"],
                                    triggers=[DeploymentEventTrigger(**t) for t in spec["triggers"]])
    return str(deployment.apply())


def _drift_events(model: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    since = datetime.now(UTC) - timedelta(days=1)
    with get_client(sync_client=True) as client:
        page = client.read_events(filter=EventFilter(event=EventNameFilter(name=[DRIFT_EVENT]),
                                                     occurred=EventOccurredFilter(since=since)), limit=50)
    return [e for e in page.events if e.payload.get("model") == model]


def _runs_of(deployment_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def _wait_for(what: str, found, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)
    return value


def test_steady_traffic_raises_nothing_and_shifted_traffic_one_event_that_starts_the_pipeline(served):
    config, version, model_id = served
    deployment_id = _apply_shipped_drift_trigger()
    log = config.serving.state_dir / "requests.jsonl"
    write_requests(log, training_distribution(40, seed=21), STEADY_END - timedelta(minutes=30), version)
    write_requests(log, ["answered by a canary"] * 5, STEADY_END - timedelta(minutes=20), "99", first_id=500)
    shifted = other_topics(25, seed=2) + short_questions(25, seed=3)
    ids = write_requests(log, shifted, SHIFTED_END - timedelta(minutes=30), version, first_id=1000)
    _rate(config, ids[:6], version, rating=1)

    steady = monitor(window_end=STEADY_END, config=config)
    assert (steady.version, steady.decision, steady.reasons, steady.event_id) == (version, "no drift", [], None)

    drift = monitor(window_end=SHIFTED_END, config=config)
    assert drift.decision == "drift" and drift.event_id
    assert [r.split(":")[0] for r in drift.reasons] == ["prompt length drift", "embedding drift",
                                                        "out-of-domain prompts", "feedback"]
    again = monitor(window_end=SHIFTED_END, config=config)  # a rerun of the same window
    assert again.judged_before and again.event_id == drift.event_id and again.monitoring_run == drift.monitoring_run

    # exactly one event, for the shifted window (the steady one would have been stored before it)
    events = _wait_for("drift event", lambda: _drift_events(config.registry.model_name))
    time.sleep(1.0)
    events = _drift_events(config.registry.model_name)
    assert [(str(e.id), e.payload["window_end"]) for e in events] == [(drift.event_id, SHIFTED_END.isoformat())]
    assert events[0].resource["sluice.monitor.on-drift"] == "run-pipeline"

    # the shipped trigger started the configured run: one pipeline run on main
    runs = _wait_for("pipeline-on-drift flow run", lambda: _runs_of(deployment_id))
    time.sleep(1.0)
    runs = _runs_of(deployment_id)
    assert len(runs) == 1 and runs[0].parameters == {"data_ref": "main"}

    _check_mlflow(config, drift.monitoring_run, steady.monitoring_run, model_id)
    report = latest_artifact("monitor")
    assert "DRIFT" in report and "t: training   w: window" in report


def _rate(config: SluiceConfig, response_ids: list[str], version: str, rating: int) -> None:
    from sluice.serving.feedback import FeedbackStore

    store = FeedbackStore(config.serving.state_dir / "feedback.db")
    for response_id in response_ids:
        store.record_response(response_id, endpoint="chat", model_version=version, prompt="p", completion="c",
                              finish_reason="stop")
        store.add_feedback(response_id, rating)
    store.close()


def _check_mlflow(config: SluiceConfig, drift_run: str | None, steady_run: str | None, model_id: str) -> None:
    """Each window is a finished monitoring run; its figures are on the served version's logged model too."""
    client = mlflow_client(tracking_target(config.tracking).tracking_uri)
    assert drift_run and steady_run
    drifted, steady = client.get_run(drift_run), client.get_run(steady_run)
    assert drifted.info.status == steady.info.status == "FINISHED"
    assert drifted.data.tags[lineage.DECISION] == "drift" and steady.data.tags[lineage.DECISION] == "no drift"
    assert drifted.data.metrics["monitor.ood_share"] > 0.4 > steady.data.metrics["monitor.ood_share"]
    assert drifted.data.metrics["monitor.requests"] == 50 and steady.data.metrics["monitor.other_versions"] == 5
    on_model = {m.key for m in client.get_logged_model(model_id).metrics or []}
    assert {"monitor.embedding_distance", "monitor.length_ks", "monitor.mean_rating"} <= on_model
