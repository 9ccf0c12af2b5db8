"""The LLM judge as one of the canary's bounds: decide_canary by table (a worse judge score breaks the bound,
no judge configured skips it with a note, a side the judge could not rate is not a pass), and the judge's
reference-free scores of each side's latest answers through an OpenAI-compatible endpoint on loopback
(tests/judge_endpoint.py: real HTTP, failed calls counted and never scored)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluice.core.config import JudgeConfig
from sluice.core.config.sections import CanaryConfig
from sluice.core.promotion.canary import (
    CanaryEvidence,
    CanaryResult,
    SideTraffic,
    canary_report,
    decide_canary,
)
from sluice.core.promotion.canary_traffic import measure_canary
from sluice.core.promotion.judge_checks import judge_scores
from sluice.core.promotion.shadow import ShadowVerdict
from tests.judge_endpoint import judge_endpoint

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = CanaryConfig(window_seconds=600, min_requests=100, early_withdraw_after=20, min_judge_delta=-0.5)
NO_JUDGE_NOTE = "LLM judge: no evaluation.judge.model configured: not compared"


def side(version: str, score: float | None, judged: int = 20, failed: int = 0) -> SideTraffic:
    return SideTraffic(version=version, requests=100, p95_latency_ms=200.0, mean_completion_tokens=20.0,
                       judged=judged if score is not None else 0, judge_failed=failed, mean_judge_score=score)


def evidence(challenger: float | None, champion: float | None = 4.0, judge: str | None = "judge",
             **challenger_counts: int) -> CanaryEvidence:
    return CanaryEvidence(challenger=side("3", challenger, **challenger_counts), champion=side("2", champion),
                          started=START, measured_at=START + timedelta(seconds=700), judge_model=judge)


def test_a_worse_judge_score_breaks_the_bound_and_one_within_it_holds() -> None:
    worse = decide_canary(evidence(3.4), POLICY)
    assert worse.outcome == "withdraw"
    assert worse.failed == [("LLM judge score (1-5) 3.40 (20 rated, 0 failed) against 4.00 (20 rated, 0 failed) for "
                             "@champion: -0.60, below the allowed -0.50")]
    held = decide_canary(evidence(3.5, failed=2), POLICY)  # at the edge
    assert held.outcome == "promote" and held.failed == []
    assert held.reasons[-1] == ("LLM judge score (1-5) 3.50 (20 rated, 2 failed) against 4.00 (20 rated, 0 failed) "
                                "for @champion: -0.50, within the allowed -0.50: ok")
    assert decide_canary(evidence(3.4), POLICY.model_copy(update={"min_judge_delta": -1.0})).outcome == "promote"


def test_without_a_judge_the_bound_is_skipped_with_a_note() -> None:
    verdict = decide_canary(evidence(None, None, judge=None), POLICY)
    assert verdict.outcome == "promote" and verdict.reasons[-1] == NO_JUDGE_NOTE


def test_a_side_the_judge_could_not_rate_is_not_a_pass() -> None:
    verdict = decide_canary(evidence(None, failed=20), POLICY)
    assert verdict.outcome == "withdraw"
    assert verdict.failed == [("LLM judge score: not measured on @challenger (20 judge call(s) failed, none rated), "
                               "so a worse challenger cannot be ruled out")]


def test_one_summary_names_the_rollout_that_judged() -> None:
    canary = decide_canary(evidence(3.4), POLICY)
    shadow = ShadowVerdict(**canary.model_dump(exclude={"kind"}))
    assert canary.summary().startswith("withdraw version 3 (canary against champion version 2, 100 vs 100 requests")
    assert shadow.summary() == canary.summary().replace("(canary against", "(shadow against")
    assert ": 1 bound(s) broken: LLM judge score (1-5) 3.40" in canary.summary()


@pytest.fixture
def judge_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    with judge_endpoint() as (url, seen):
        monkeypatch.setenv("SLUICE_JUDGE_BASE_URL", url)
        yield seen


def test_the_judge_rates_each_answer_alone_and_counts_failed_calls(judge_url: list[dict]) -> None:
    scores = judge_scores(["Who keeps the sluice?", "Q-broken", "Who keeps it?", "Q-seven"],
                          ["The keeper is Wren.", "The keeper is Wren.", "", "The keeper is Wren."], model="judge",
                          timeout_seconds=5)
    assert scores == (3.0, 2, 2)  # 5 and 1; no JSON and a score off the 1-5 scale are counted, never scored
    assert [body["response_format"] for body in judge_url] == [{"type": "json_object"}] * 4
    assert judge_url[2]["messages"][-1]["content"] == "Request:\nWho keeps it?\n\nAnswer:\n(empty)"


def test_a_judge_model_without_an_endpoint_is_an_error_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_JUDGE_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="evaluation.judge.model is 'judge' but SLUICE_JUDGE_BASE_URL is not set"):
        judge_scores(["q"], ["a"], model="judge", timeout_seconds=5)


def _row(i: int, alias: str, version: str, completion: str, question: str = "Who keeps the sluice?") -> dict:
    return {"id": f"chatcmpl-{alias}-{i}", "time": (START + timedelta(seconds=i + 1)).isoformat(), "status": 200,
            "model_version": version, "alias": alias, "canary": True, "latency_ms": 100.0, "completion_tokens": 5,
            "prompt": [{"role": "user", "content": question}], "completion": completion}


def test_each_sides_latest_answers_are_rated_and_reach_the_report(judge_url: list[dict], tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    rows = [_row(i, "challenger", "3", "The keeper is Wren.") for i in range(3)]  # older than the sample
    rows += [_row(3, "challenger", "3", "x", question="Q-broken")]
    rows += [_row(i, "challenger", "3", "Bread is baked at dawn.") for i in range(4, 7)]
    rows += [_row(i, "champion", "2", "The keeper is Wren.") for i in range(5)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    measured = measure_canary(log, tmp_path / "feedback.db", challenger="3", champion="2", started=START,
                              judge=JudgeConfig(model="judge", timeout_seconds=5), judge_sample=4,
                              now=START + timedelta(seconds=60))
    challenger, champion = measured.challenger, measured.champion
    assert (challenger.mean_judge_score, challenger.judged, challenger.judge_failed) == (1.0, 3, 1)
    assert (champion.mean_judge_score, champion.judged, champion.judge_failed) == (5.0, 4, 0)
    assert len(judge_url) == 8 and measured.judge_model == "judge"
    verdict = decide_canary(measured, POLICY.model_copy(update={"min_requests": 5}))
    assert verdict.outcome == "withdraw" and verdict.failed[0].startswith("LLM judge score (1-5) 1.00 (3 rated, 1")
    report = canary_report("m", CanaryResult(message="withdrawn", verdict=verdict, evidence=measured))
    assert "| LLM judge score, judge (rated, failed) | 1.00 (3, 1) | 5.00 (4, 0) |" in report

    unjudged = measure_canary(log, tmp_path / "feedback.db", challenger="3", champion="2", started=START,
                              judge=JudgeConfig(), now=START + timedelta(seconds=60))
    assert unjudged.judge_model is None and unjudged.challenger.judged == 0 and len(judge_url) == 8
    assert decide_canary(unjudged, POLICY).reasons[-1] == NO_JUDGE_NOTE
