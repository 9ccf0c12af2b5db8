"""The LLM judge in the canary, through the watch-canary flow (under Prefect's test harness): with
``evaluation.judge.model`` set, the flow has an OpenAI-compatible judge on loopback (tests/judge_endpoint.py,
real HTTP) rate each side's latest canary answers from the request log; a challenger whose answers are as
long, as fast and as non-empty as the champion's but unhelpful is withdrawn on the judge's score alone, a
helpful one is promoted, and the tags, the ledger and `sluice registry history` keep the judge's evidence
(real MLflow store in tmp_path, a request log as `sluice serve` writes it; no model server needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows.rollout import watch_canary
from sluice.core.config import (
    JudgeConfig,
    PromotionConfig,
    RegistryConfig,
    SluiceConfig,
)
from sluice.core.config.sections import EvaluationConfig, ServingConfig, TrackingConfig
from sluice.core.lineage import FlowRun
from sluice.core.promotion.aliases import apply_promotion
from sluice.core.promotion.rollout import start_canary
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.tracking import tracking_target
from sluice.shell.cli.model_commands import registry_history
from tests.judge_endpoint import judge_endpoint

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]  # the harness starts a Prefect API

MODEL = "canary-judge-model"
HELPFUL, UNHELPFUL = "The keeper is Wren.", "Bread is baked at dawn."  # logged with the same token count


def log_canary_answers(log: Path, version: str, alias: str, answer: str, count: int = 6) -> None:
    """Canary-routed answers, as serving logs them, a second after now (inside the trial's window)."""
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    with log.open("a") as handle:
        for i in range(count):
            handle.write(json.dumps({
                "id": f"chatcmpl-{version}-{alias}-{i}", "time": at, "status": 200, "model": MODEL,
                "model_version": version, "alias": alias, "canary": True, "latency_ms": 50.0,
                "prompt": [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}],
                "completion": answer, "completion_tokens": 6}) + "\n")


def test_the_judge_withdraws_an_unhelpful_challenger_and_promotes_a_helpful_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SLUICE_SERVING_URL", raising=False)  # no endpoint to ask to reload
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    config = SluiceConfig(
        tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"), registry=RegistryConfig(model_name=MODEL),
        serving=ServingConfig(state_dir=state_dir), evaluation=EvaluationConfig(judge=JudgeConfig(model="judge")),
        promotion=PromotionConfig(rollout="canary", canary={"share": 0.5, "min_requests": 6, "judge_sample": 4}))
    models = ModelRegistry(tracking_target(config.tracking), MODEL)
    client = MlflowClient(models.target.tracking_uri)
    client.create_registered_model(MODEL)
    for _ in range(3):  # versions 1 (champion), 2 (unhelpful), 3 (helpful); the flow never loads them
        client.create_model_version(MODEL, source=str(tmp_path))
    apply_promotion(models, "1", {"summary": "the first champion"}, FlowRun())
    log = state_dir / "requests.jsonl"

    with judge_endpoint() as (url, seen):
        monkeypatch.setenv("SLUICE_JUDGE_BASE_URL", url)
        for challenger, answer, outcome in (("2", UNHELPFUL, "withdraw"), ("3", HELPFUL, "promote")):
            start_canary(models, challenger, 0.5, {"summary": f"version {challenger} on trial"}, FlowRun())
            log_canary_answers(log, "1", "champion", HELPFUL)
            log_canary_answers(log, challenger, "challenger", answer)
            result = watch_canary(config=config)
            assert result.verdict is not None and result.verdict.outcome == outcome, result.message
    assert len(seen) == 16  # 4 answers a side, two runs
    promoted = result.verdict  # the last run's; the withdrawal's evidence is in version 2's tags
    assert promoted is not None and promoted.failed == []
    assert "LLM judge score (1-5) 5.00 (4 rated, 0 failed) against 5.00" in promoted.reasons[-1]
    tags = client.get_model_version(MODEL, "2").tags
    assert (tags["sluice.decision"], tags["sluice.canary.verdict"]) == ("withdrawn", "withdraw")
    evidence = tags["sluice.canary.evidence"]
    assert "LLM judge score (1-5) 1.00 (4 rated, 0 failed) against 5.00 (4 rated, 0 failed) for @champion: " \
           "-4.00, below the allowed -0.50" in evidence
    assert "empty answers 0.0 % against 0.0 %" in evidence  # nothing else told it apart
    assert models.alias_version("champion") == "3" and models.alias_version("challenger") is None

    registry_history(overrides=[f"tracking.embedded_dir={config.tracking.embedded_dir}",
                                f"registry.model_name={MODEL}"])
    history = capsys.readouterr().out
    print(history)
    assert "withdraw version 2 (canary against champion version 1" in history
    assert "1 bound(s) broken: LLM judge score (1-5) 1.00 (4 rated, 0 failed) against 5.00" in history
    assert "promote version 3 (canary against champion version 1" in history and "every bound held" in history
