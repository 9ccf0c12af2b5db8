"""The promotion gate's edges that mutation testing (tools/mutation.py, scope "gate") found
unchecked: the exact reasons of each branch, the boundaries of each check, how many digits a
reason shows, the wiring-bug messages, and the gate on a whole evaluation report."""

from __future__ import annotations

import math

import pytest

from sluice.core.config import PromotionConfig
from sluice.core.evaluation.results import Comparison, EvaluatedModel, EvaluationReport
from sluice.core.lake.published import PublishedData
from sluice.core.promotion.gate import decide_on_report, decide_promotion, decision_evidence

SLACK = 1e-9  # the gate's float slack (gate._FLOAT_SLACK)


def _policy(**changes: object) -> PromotionConfig:
    fields: dict[str, object] = {"mode": "enforce", "min_metrics": {"rougeL": 0.3}, "max_regression": {"rougeL": 0.02},
                                 "must_beat_champion": [], "must_beat_base_model": ["rougeL"]}
    return PromotionConfig(**(fields | changes))


def _model(label: str, version: str | None = None, **metrics: float) -> EvaluatedModel:
    return EvaluatedModel(label=label, metrics=metrics, version=version, model_identity=f"test:{label}",
                          data_commit="c" * 64, run_id=f"run-{label}", tracking_uri="sqlite:///unused.db",
                          samples=40, generation_tokens_per_second=0.0, latency_ms_per_sample_p50=0.0)


def _cmp(metric: str, mean: float, low: float, high: float) -> Comparison:
    return Comparison(metric=metric, mean_difference=mean, low=low, high=high, samples=40, confidence=0.95)


CANDIDATE = _model("version 3", "3", rougeL=0.45)
CHAMPION = _model("version 2", "2", rougeL=0.42)


# --- the reasons of each branch, word for word ------------------------------------


def test_first_champion_with_nothing_asked_of_it_against_the_base_model() -> None:
    decision = decide_promotion(CANDIDATE, None, _policy(must_beat_base_model=[]),
                                base_model=_model("SmolLM2", rougeL=0.2))
    assert decision.reasons == ["no champion yet: this would be the first champion; the policy asks nothing of it "
                                "against the base model (must_beat_base_model is empty)",
                                "rougeL 0.450 ≥ minimum 0.300: ok"]
    assert decision.compared_with == "the base model (SmolLM2)"  # named by its own label


def test_a_base_model_labelled_the_base_model_is_not_named_twice() -> None:
    decision = decide_promotion(CANDIDATE, None, _policy(), base_model=_model("The Base Model", rougeL=0.2),
                                base_comparisons={"rougeL": _cmp("rougeL", 0.1, 0.05, 0.15)})
    assert decision.compared_with == "the base model"
    assert decision.reasons[-1] == "rougeL beats the base model: difference +0.100, CI [+0.050, +0.150] lies above 0: ok"


def test_first_champion_without_a_base_model_evaluation_names_every_wanted_metric() -> None:
    decision = decide_promotion(CANDIDATE, None, _policy(must_beat_base_model=["rougeL", "bleu"]))
    assert decision.outcome == "reject"
    assert decision.reasons[0] == "no champion yet: the first champion must beat the base model on rougeL, bleu"
    assert decision.failed == ["the base model was not evaluated (no paired comparison), so the candidate cannot "
                               "show it beats it on rougeL, bleu"]


def test_no_champion_and_no_base_model_to_beat_says_only_the_minimums_apply() -> None:
    decision = decide_promotion(CANDIDATE, None, _policy(must_beat_base_model=[]))
    assert decision.reasons == ["no champion yet and no base model to beat (must_beat_base_model is empty): "
                                "only the minimums apply", "rougeL 0.450 ≥ minimum 0.300: ok"]


def test_a_policy_with_no_applicable_check_says_nothing_can_fail() -> None:
    decision = decide_promotion(CANDIDATE, None, _policy(must_beat_base_model=[], min_metrics={}))
    assert decision.reasons[-1] == "the policy has no checks that apply here, so nothing can fail"
    assert decision.outcome == "promote"


def test_an_unmeasured_metric_says_it_never_passes() -> None:
    decision = decide_promotion(_model("c", rougeL=math.nan), None, _policy(must_beat_base_model=[]))
    assert decision.failed == ["rougeL was not measured (minimum 0.300): a metric that was not measured never passes"]


def test_the_summary_joins_every_failure_with_a_semicolon() -> None:
    decision = decide_promotion(_model("c", rougeL=0.1, bleu=0.1), None,
                                _policy(min_metrics={"rougeL": 0.3, "bleu": 0.3}, must_beat_base_model=[]))
    assert decision.summary() == ("reject c with nothing to compare against: 2 check(s) failed: rougeL 0.100 < minimum "
                                  "0.300: below the minimum; bleu 0.100 < minimum 0.300: below the minimum")


# --- boundaries: exactly at the edge passes ---------------------------------------


def test_a_metric_exactly_at_the_floor_less_the_slack_passes() -> None:
    decision = decide_promotion(_model("c", rougeL=0.3 - SLACK), None, _policy(must_beat_base_model=[]))
    assert decision.outcome == "promote", decision.reasons


def test_a_drop_exactly_at_the_tolerance_plus_the_slack_passes() -> None:
    # 0.75 and 0.25 are exact in binary: the change is exactly -(tolerance + slack)
    candidate, champion = _model("c", rougeL=0.75 - 0.25 - SLACK), _model("ch", rougeL=0.75)
    assert candidate.metrics["rougeL"] - 0.75 == -0.25 - SLACK
    decision = decide_promotion(candidate, champion, _policy(min_metrics={}, max_regression={"rougeL": 0.25}))
    assert decision.outcome == "promote", decision.reasons


def test_an_interval_ending_exactly_at_zero_includes_zero() -> None:
    decision = decide_promotion(CANDIDATE, CHAMPION, _policy(min_metrics={}, max_regression={}, must_beat_champion=["rougeL"]),
                                champion_comparisons={"rougeL": _cmp("rougeL", -0.02, -0.04, 0.0)})
    assert decision.failed == ["rougeL does not beat champion version 2: difference -0.020, CI [-0.040, +0.000] "
                               "includes 0: not a clear improvement"]


def test_an_interval_wholly_below_zero_is_worse() -> None:
    decision = decide_promotion(CANDIDATE, CHAMPION, _policy(min_metrics={}, max_regression={}, must_beat_champion=["rougeL"]),
                                champion_comparisons={"rougeL": _cmp("rougeL", -0.02, -0.04, -0.01)})
    assert decision.failed == ["rougeL does not beat champion version 2: difference -0.020, CI [-0.040, -0.010] "
                               "lies below 0: worse"]


# --- digits: every number that would print like another gets more -----------------


def _beats_reason(mean: float, low: float, high: float) -> str:
    decision = decide_promotion(CANDIDATE, CHAMPION, _policy(min_metrics={}, max_regression={}, must_beat_champion=["rougeL"]),
                                champion_comparisons={"rougeL": _cmp("rougeL", mean, low, high)})
    return decision.reasons[-1]


@pytest.mark.parametrize(("mean", "low", "high", "numbers"), [
    (0.02, 0.0004, 0.04, "difference +0.0200, CI [+0.0004, +0.0400]"),  # low would print as 0
    (0.0201, 0.01, 0.0204, "difference +0.0201, CI [+0.0100, +0.0204]"),  # mean and high would print alike
    (0.02, SLACK, 0.04, "difference +0.020, CI [+0.000, +0.040]"),  # within the slack of 0: the same number
    (math.nan, 0.01, 0.04, "difference not measured, CI [+0.010, +0.040]"),
])
def test_interval_numbers_get_the_digits_that_tell_them_apart(mean: float, low: float, high: float,
                                                               numbers: str) -> None:
    assert _beats_reason(mean, low, high) == f"rougeL beats champion version 2: {numbers} lies above 0: ok"


def test_regression_numbers_get_the_digits_that_tell_candidate_and_champion_apart() -> None:
    decision = decide_promotion(_model("c", rougeL=0.3001), _model("ch", rougeL=0.3004), _policy(min_metrics={}))
    assert decision.reasons == ["rougeL 0.3001 against 0.3004 for champion ch: change -0.0003, within the allowed "
                                "drop of 0.0200: ok"]


# --- wiring bugs name what is wrong -------------------------------------------------


@pytest.mark.parametrize("argument", ["champion_comparisons", "base_comparisons"])
def test_a_misfiled_comparison_names_the_argument(argument: str) -> None:
    with pytest.raises(ValueError) as raised:
        decide_promotion(CANDIDATE, CHAMPION, _policy(), **{argument: {"rougeL": _cmp("bleu", 0.1, 0.05, 0.15)}})
    assert str(raised.value) == f"{argument}['rougeL'] holds the comparison of 'bleu'"


def test_champion_comparisons_without_a_champion_say_so() -> None:
    with pytest.raises(ValueError) as raised:
        decide_promotion(CANDIDATE, None, _policy(), champion_comparisons={"rougeL": _cmp("rougeL", 0.1, 0.05, 0.15)})
    assert str(raised.value) == ("champion_comparisons were given but champion is None: they compare with which "
                                 "model?")


# --- the gate on a pipeline run's evaluation report ------------------------------


def _report(champion: EvaluatedModel | None, base_model: EvaluatedModel | None,
            comparisons: dict[str, Comparison]) -> EvaluationReport:
    data = PublishedData(repository="sluice", data_commit="d" * 64, kind="sft", prefix="datasets/sft/clean/",
                         paths=["datasets/sft/clean/part-0.parquet"], local_files=[], rows=40)
    return EvaluationReport(eval_data=data, candidate=_model("candidate", rougeL=0.45), champion=champion,
                            base_model=base_model, comparisons=comparisons)


def test_on_a_report_with_a_champion_the_versions_name_both_sides() -> None:
    comparisons = {"rougeL": _cmp("rougeL", 0.03, 0.01, 0.05)}
    report = _report(_model("champion", "2", rougeL=0.42), None, comparisons)
    decision = decide_on_report(report, "3", _policy(must_beat_champion=["rougeL"]))
    assert (decision.outcome, decision.baseline, decision.candidate, decision.compared_with) == (
        "promote", "champion", "version 3", "champion version 2")
    assert decision.reasons[-1] == ("rougeL beats champion version 2: difference +0.030, CI [+0.010, +0.050] "
                                    "lies above 0: ok")


def test_on_a_report_without_a_champion_the_candidate_must_beat_the_base_model() -> None:
    worse = {"rougeL": _cmp("rougeL", -0.03, -0.05, -0.01)}
    report = _report(None, _model("SmolLM2 fingerprint", rougeL=0.48), worse)
    decision = decide_on_report(report, "1", _policy())
    assert (decision.outcome, decision.baseline, decision.compared_with) == ("reject", "base_model", "the base model")
    assert decision.failed == ["rougeL does not beat the base model: difference -0.030, CI [-0.050, -0.010] "
                               "lies below 0: worse"]


def test_on_a_report_with_neither_only_the_minimums_apply() -> None:
    decision = decide_on_report(_report(None, None, {}), "1", _policy(must_beat_base_model=[]))
    assert (decision.outcome, decision.baseline, decision.compared_with) == ("promote", "none", None)


def test_decision_evidence_keeps_the_decision_and_the_numbers_it_was_made_on() -> None:
    comparisons = {"rougeL": _cmp("rougeL", 0.03, 0.01, 0.05)}
    report = _report(_model("champion", "2", rougeL=0.42), None, comparisons)
    decision = decide_on_report(report, "3", _policy(must_beat_champion=["rougeL"]))
    evidence = decision_evidence(decision, report)
    assert evidence == {"decision": decision.model_dump(mode="json"), "data_commit": "d" * 64,
                        "candidate": report.candidate.model_dump(mode="json"),
                        "champion": report.champion.model_dump(mode="json"),
                        "comparisons": {"rougeL": comparisons["rougeL"].model_dump(mode="json")}}
    assert evidence["champion"]["metrics"] == {"rougeL": 0.42} and evidence["decision"]["outcome"] == "promote"


def test_decision_evidence_without_a_champion_records_none() -> None:
    report = _report(None, None, {})
    evidence = decision_evidence(decide_on_report(report, "1", _policy(must_beat_base_model=[])), report)
    assert evidence["champion"] is None and evidence["comparisons"] == {}
