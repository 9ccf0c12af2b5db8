"""Canary rollout end to end: the gate puts a version on trial as @challenger, a real server splits live
traffic, and the watch-canary flow (under Prefect's test harness) withdraws a challenger that answers
empty and promotes a good one; the registry's tags, the ledger and `sluice registry history` keep both
verdicts with their evidence (real MLflow store, real sockets, LoRA adapters over one tiny base)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from flows.promote import decide_and_record
from flows.rollout import watch_canary
from sluice.core.config import PromotionConfig, SluiceConfig
from sluice.core.evaluation.results import EvaluatedModel, EvaluationReport
from sluice.core.lake.published import PublishedData
from sluice.core.lineage import FlowRun
from sluice.core.promotion.aliases import apply_promotion
from sluice.core.registry.client import ModelRegistry, ModelVersionRef
from sluice.core.registry.tracking import tracking_target
from sluice.serving import ServingHandle
from sluice.shell.cli.model_commands import registry_history
from tests.serving.canary_fixtures import build_silent_adapter
from tests.serving.conftest import API_KEY, Registry
from tests.serving.lora_fixtures import log_lora_version
from tests.serving.test_hot_swap import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]
MODEL = "canary-rollout-model"
USERS = [f"user-{i}" for i in range(24)]


def _evaluated(label: str, version: str | None) -> EvaluatedModel:
    return EvaluatedModel(label=label, metrics={"rougeL": 0.5}, version=version, model_identity=f"test:{label}",
                          data_commit="c" * 64, run_id=f"run-{label}", tracking_uri="sqlite:///unused.db",
                          samples=40, generation_tokens_per_second=0.0, latency_ms_per_sample_p50=0.0)


def through_the_gate(config: SluiceConfig, version: str) -> list:
    """The promote flow's decision and moves for a candidate that passes the offline gate against @champion."""
    data = PublishedData(repository="sluice", data_commit="d" * 64, kind="eval", prefix="datasets/eval/clean/",
                         paths=["datasets/eval/clean/part-0.parquet"], local_files=[], rows=40)
    report = EvaluationReport(eval_data=data, candidate=_evaluated("candidate", None),
                              champion=_evaluated("champion", "1"), base_model=None, comparisons={})
    ref = ModelVersionRef(name=MODEL, version=version, run_id=None, source="", created=True)
    result = decide_and_record(tracking_target(config.tracking), ref, report, config)
    assert result.decision is not None and result.decision.promote
    return result.moves


def send_traffic(url: str) -> dict[str, int]:
    """One request per user for the default model; how many each version answered."""
    answered: dict[str, int] = {}
    for user in USERS:
        response = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, timeout=60,
                              json={"model": MODEL, "messages": CHAT, "max_tokens": 4, "temperature": 0, "user": user})
        assert response.status_code == 200, response.text
        version = response.headers["X-Sluice-Model-Version"]
        answered[version] = answered.get(version, 0) + 1
    return answered


def test_a_silent_challenger_is_withdrawn_and_a_good_one_is_promoted(
        registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    silent = build_silent_adapter(tiny_models[1], tmp_path / "silent")
    for adapter in (lora_adapters[11], silent, lora_adapters[12]):  # versions 1 (champion), 2 (silent), 3 (good)
        log_lora_version(registry, MODEL, tiny_models[1], adapter)
    config = registry.config(MODEL, tmp_path / "state", extra_aliases=["challenger"], watch_seconds=60)
    config = config.model_copy(update={"promotion": PromotionConfig(
        rollout="canary", min_metrics={}, max_regression={}, must_beat_base_model=[],
        canary={"share": 0.5, "window_seconds": 3600, "min_requests": 8, "max_p95_latency_ratio": 3.0})})
    models = ModelRegistry(tracking_target(config.tracking), MODEL)
    apply_promotion(models, "1", {"summary": "the first champion"}, FlowRun())
    client = MlflowClient(registry.tracking_uri)
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        monkeypatch.setenv("SLUICE_SERVING_URL", server.url)
        monkeypatch.setenv("SLUICE_SERVING_API_KEYS", API_KEY)
        server.wait_until_serving("1")

        assert [tuple(m) for m in through_the_gate(config, "2")] == [("challenger", None, "2")]
        assert client.get_model_version(MODEL, "2").tags["sluice.decision"] == "challenger"
        wait_for(lambda: server.state.watcher.served_version("challenger") == "2")  # the flow asked it to reload
        assert set(send_traffic(server.url)) == {"1", "2"}
        withdrawn = watch_canary(config=config)
        assert withdrawn.verdict is not None and withdrawn.verdict.outcome == "withdraw", withdrawn.message
        assert [tuple(m) for m in withdrawn.moves] == [("challenger", "2", None)]
        assert any(r.startswith("empty answers 100.0 % against 0.0 %") for r in withdrawn.verdict.failed)
        assert models.alias_version("challenger") is None and models.alias_version("champion") == "1"
        tags = client.get_model_version(MODEL, "2").tags
        assert (tags["sluice.decision"], tags["sluice.canary.verdict"]) == ("withdrawn", "withdraw")
        assert "empty answers 100.0 %" in tags["sluice.canary.evidence"]
        assert send_traffic(server.url) == {"1": len(USERS)}  # the server dropped it at once
        assert through_the_gate(config, "2") == []  # a rerun of its pipeline does not try it again

        through_the_gate(config, "3")
        early = watch_canary(config=config)  # no traffic yet: the verdict is not due, nothing moves
        assert early.verdict is not None and early.verdict.outcome == "watch" and early.moves == []
        wait_for(lambda: server.state.watcher.served_version("challenger") == "3")
        assert set(send_traffic(server.url)) == {"1", "3"}
        promoted = watch_canary(config=config)  # a new run: everything it needs is in the registry and the log
        assert promoted.verdict is not None and promoted.verdict.outcome == "promote", promoted.message
        assert [tuple(m) for m in promoted.moves] == [("previous", None, "1"), ("champion", "1", "3"),
                                                      ("challenger", "3", None)]
        assert send_traffic(server.url) == {"3": len(USERS)}
        assert client.get_model_version(MODEL, "3").tags["sluice.decision"] == "promoted"
        assert watch_canary(config=config).message == "no @challenger: no canary to watch"

    registry_history(overrides=[f"tracking.embedded_dir={config.tracking.embedded_dir}",
                                f"registry.model_name={MODEL}"])
    history = capsys.readouterr().out
    print(history)
    assert "version 3 on trial as @challenger for 50% of the default model's traffic" in history
    assert "@challenger    2 -> -    withdraw" in history and "@champion     1 -> 3    promote" in history
    assert "withdraw version 2 (canary against champion version 1" in history
    assert "empty answers 100.0 % against 0.0 % for @champion" in history
    assert "promote version 3 (canary against champion version 1" in history and "every bound held" in history
