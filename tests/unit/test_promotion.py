"""The promotion gate, by table: which candidates pass, which fail, and that
every reason says why with its numbers. No Prefect, no MLflow."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from sluice.core.config import PromotionConfig
from sluice.core.evaluation.results import Comparison, EvaluatedModel
from sluice.core.promotion.aliases import AliasMove, RollbackError, alias_moves, rollback_moves
from sluice.core.promotion.gate import Decision, decide_promotion

NAN = math.nan


def _policy(**changes: object) -> PromotionConfig:
    """A policy spelled out here, so the tests do not move with config.py's defaults."""
    fields: dict[str, object] = {
        "mode": "enforce",
        "min_metrics": {"rougeL": 0.3},
        "max_regression": {"rougeL": 0.02},
        "must_beat_champion": [],
        "must_beat_base_model": ["rougeL"],
    }
    return PromotionConfig(**(fields | changes))


def _cmp(metric: str, mean: float, low: float, high: float) -> Comparison:
    return Comparison(metric=metric, mean_difference=mean, low=low, high=high, samples=40, confidence=0.95)


def _evaluated(label: str, metrics: dict[str, float], version: str | None = None) -> EvaluatedModel:
    """An evaluation as the gate sees it: a label, metrics, a version; the rest is bookkeeping."""
    return EvaluatedModel(label=label, metrics=metrics, version=version, model_identity=f"test:{label}",
                          data_commit="c" * 64, run_id=f"run-{label}", tracking_uri="sqlite:///unused.db",
                          samples=40, generation_tokens_per_second=0.0, latency_ms_per_sample_p50=0.0)


def _cand(**metrics: float) -> EvaluatedModel:
    return _evaluated("version 3", metrics, "3")


def _champ(**metrics: float) -> EvaluatedModel:
    return _evaluated("version 2", metrics, "2")


BASE = _evaluated("base model", {"rougeL": 0.2})


@dataclass
class Case:
    id: str
    candidate: EvaluatedModel
    champion: EvaluatedModel | None
    outcome: str
    baseline: str
    failed: list[str] = field(default_factory=list)  # one substring per failed check, in order
    reasons: list[str] = field(default_factory=list)  # substrings that some reason must contain
    policy: dict = field(default_factory=dict)
    champion_comparisons: dict[str, Comparison] | None = None
    base_model: EvaluatedModel | None = None
    base_comparisons: dict[str, Comparison] | None = None


CASES = [
    # --- with a champion -----------------------------------------------------
    Case("passes-everything-with-champion", _cand(rougeL=0.45, semantic_similarity=0.80),
         _champ(rougeL=0.42, semantic_similarity=0.79), "promote", "champion",
         policy={"max_regression": {"rougeL": 0.02, "semantic_similarity": 0.02}, "must_beat_champion": ["rougeL"]},
         champion_comparisons={"rougeL": _cmp("rougeL", 0.03, 0.01, 0.05)},
         reasons=["rougeL 0.450 ≥ minimum 0.300: ok", "semantic_similarity 0.800 against 0.790",
                  "rougeL beats champion version 2"]),
    Case("fails-minimum", _cand(rougeL=0.25), _champ(rougeL=0.25), "reject", "champion",
         failed=["rougeL 0.250 < minimum 0.300: below the minimum"]),
    Case("minimum-exactly-met", _cand(rougeL=0.3), _champ(rougeL=0.3), "promote", "champion",
         reasons=["rougeL 0.300 ≥ minimum 0.300: ok"]),
    Case("minimum-just-missed-shows-enough-digits", _cand(rougeL=0.2999), _champ(rougeL=0.2999), "reject",
         "champion", failed=["rougeL 0.2999 < minimum 0.3000"]),
    Case("nan-minimum-fails", _cand(rougeL=NAN), _champ(rougeL=0.42), "reject", "champion",
         failed=["rougeL was not measured (minimum 0.300)", "rougeL was not measured on the candidate"]),
    Case("missing-minimum-metric-fails", _cand(bleu=0.5), None, "reject", "none",
         policy={"must_beat_base_model": []}, failed=["rougeL was not measured (minimum 0.300)"]),
    Case("regression-within-tolerance", _cand(rougeL=0.41), _champ(rougeL=0.42), "promote", "champion",
         reasons=["rougeL 0.410 against 0.420 for champion version 2: change -0.010, within the allowed drop "
                  "of 0.020: ok"]),
    Case("regression-exactly-at-tolerance-passes", _cand(rougeL=0.41), _champ(rougeL=0.43), "promote", "champion",
         reasons=["change -0.020, within the allowed drop of 0.020: ok"]),
    Case("regression-over-tolerance", _cand(rougeL=0.39), _champ(rougeL=0.42), "reject", "champion",
         failed=["rougeL 0.390 against 0.420 for champion version 2: change -0.030, a bigger drop than the "
                 "allowed 0.020: regression"]),
    Case("regression-just-over-tolerance", _cand(rougeL=0.3999), _champ(rougeL=0.42), "reject", "champion",
         failed=["change -0.0201, a bigger drop than the allowed 0.0200"]),
    Case("nan-on-champion-side-fails", _cand(rougeL=0.45), _champ(rougeL=NAN), "reject", "champion",
         failed=["rougeL was not measured on champion version 2, so a regression against champion version 2 "
                 "cannot be ruled out"]),
    Case("metric-missing-on-champion-fails", _cand(rougeL=0.45), _champ(bleu=0.1), "reject", "champion",
         failed=["rougeL was not measured on champion version 2"]),
    Case("nan-on-candidate-side-fails", _cand(rougeL=0.45, semantic_similarity=NAN),
         _champ(rougeL=0.42, semantic_similarity=0.79), "reject", "champion",
         policy={"max_regression": {"semantic_similarity": 0.02}},
         failed=["semantic_similarity was not measured on the candidate"]),
    Case("nan-on-both-sides-fails", _cand(rougeL=NAN), _champ(rougeL=NAN), "reject", "champion",
         policy={"min_metrics": {}}, failed=["rougeL was not measured on either the candidate or champion"]),
    Case("must-beat-champion-ci-excludes-zero", _cand(rougeL=0.45), _champ(rougeL=0.42), "promote", "champion",
         policy={"must_beat_champion": ["rougeL"]},
         champion_comparisons={"rougeL": _cmp("rougeL", 0.03, 0.01, 0.05)},
         reasons=["rougeL beats champion version 2: difference +0.030, CI [+0.010, +0.050] lies above 0: ok"]),
    Case("must-beat-champion-ci-includes-zero", _cand(rougeL=0.43), _champ(rougeL=0.42), "reject", "champion",
         policy={"must_beat_champion": ["rougeL"]},
         champion_comparisons={"rougeL": _cmp("rougeL", 0.01, -0.005, 0.025)},
         failed=["rougeL does not beat champion version 2: difference +0.010, CI [-0.005, +0.025] includes 0"]),
    Case("must-beat-champion-ci-low-exactly-zero", _cand(rougeL=0.43), _champ(rougeL=0.42), "reject", "champion",
         policy={"must_beat_champion": ["rougeL"]},
         champion_comparisons={"rougeL": _cmp("rougeL", 0.01, 0.0, 0.02)},
         failed=["CI [+0.000, +0.020] includes 0"]),
    Case("must-beat-champion-ci-below-zero", _cand(rougeL=0.41), _champ(rougeL=0.42), "reject", "champion",
         policy={"must_beat_champion": ["rougeL"]},
         champion_comparisons={"rougeL": _cmp("rougeL", -0.01, -0.015, -0.005)},
         failed=["lies below 0: worse"]),
    Case("must-beat-champion-missing-comparison", _cand(rougeL=0.45), _champ(rougeL=0.42), "reject", "champion",
         policy={"must_beat_champion": ["rougeL"]}, champion_comparisons={},
         failed=["rougeL: no paired comparison with champion version 2, so beating it cannot be shown"]),
    Case("must-beat-champion-no-comparisons-at-all", _cand(rougeL=0.45), _champ(rougeL=0.42), "reject", "champion",
         policy={"must_beat_champion": ["rougeL"]}, failed=["rougeL: no paired comparison with champion version 2"]),
    Case("must-beat-champion-nan-ci", _cand(rougeL=0.45), _champ(rougeL=0.42), "reject", "champion",
         policy={"must_beat_champion": ["rougeL"]},
         champion_comparisons={"rougeL": _cmp("rougeL", NAN, NAN, NAN)},
         failed=["the confidence interval of the difference with champion version 2 was not measured"]),
    Case("with-champion-base-model-checks-do-not-apply", _cand(rougeL=0.45), _champ(rougeL=0.42), "promote",
         "champion", base_model=BASE, base_comparisons={"rougeL": _cmp("rougeL", 0.0, -0.1, 0.1)}),
    # --- no champion yet ----------------------------------------------------------
    Case("no-champion-beats-base", _cand(rougeL=0.45), None, "promote", "base_model",
         base_model=BASE, base_comparisons={"rougeL": _cmp("rougeL", 0.25, 0.2, 0.3)},
         reasons=["no champion yet", "rougeL beats the base model: difference +0.250, CI [+0.200, +0.300]"]),
    Case("no-champion-does-not-beat-base", _cand(rougeL=0.45), None, "reject", "base_model",
         base_model=BASE, base_comparisons={"rougeL": _cmp("rougeL", 0.02, -0.01, 0.05)},
         reasons=["no champion yet"], failed=["rougeL does not beat the base model: difference +0.020, "
                                              "CI [-0.010, +0.050] includes 0: not a clear improvement"]),
    Case("no-champion-base-not-evaluated", _cand(rougeL=0.45), None, "reject", "base_model",
         reasons=["no champion yet"], failed=["the base model was not evaluated (no paired comparison), so the "
                                              "candidate cannot show it beats it on rougeL"]),
    Case("no-champion-comparisons-without-base-model", _cand(rougeL=0.45), None, "reject", "base_model",
         base_comparisons={"rougeL": _cmp("rougeL", 0.25, 0.2, 0.3)},
         failed=["the base model was not evaluated (no paired comparison)"]),
    Case("no-champion-base-without-comparisons", _cand(rougeL=0.45), None, "reject", "base_model",
         base_model=BASE, failed=["the base model was not evaluated against the candidate"]),
    Case("no-champion-base-comparison-missing-metric", _cand(rougeL=0.45, bleu=0.3), None, "reject", "base_model",
         policy={"must_beat_base_model": ["rougeL", "bleu"]},
         base_model=BASE, base_comparisons={"rougeL": _cmp("rougeL", 0.25, 0.2, 0.3)},
         failed=["bleu: no paired comparison with the base model"]),
    Case("no-champion-no-base-policy", _cand(rougeL=0.45), None, "promote", "none",
         policy={"must_beat_base_model": []}, reasons=["no champion yet", "rougeL 0.450 ≥ minimum 0.300: ok"]),
    Case("no-champion-still-needs-minimums", _cand(rougeL=0.25), None, "reject", "base_model",
         base_model=BASE, base_comparisons={"rougeL": _cmp("rougeL", 0.05, 0.01, 0.09)},
         failed=["rougeL 0.250 < minimum 0.300"]),
    Case("empty-policy-says-so", _cand(rougeL=0.1), _champ(rougeL=0.9), "promote", "champion",
         policy={"min_metrics": {}, "max_regression": {}}, reasons=["the policy has no checks"]),
    # --- several failures ---------------------------------------------------------
    Case("several-failures-all-listed", _cand(rougeL=0.25, semantic_similarity=NAN),
         _champ(rougeL=0.42, semantic_similarity=0.79), "reject", "champion",
         policy={"max_regression": {"rougeL": 0.02, "semantic_similarity": 0.02}, "must_beat_champion": ["rougeL"]},
         champion_comparisons={"rougeL": _cmp("rougeL", -0.17, -0.2, -0.14)},
         failed=["rougeL 0.250 < minimum 0.300", "rougeL 0.250 against 0.420 for champion version 2: change -0.170",
                 "semantic_similarity was not measured on the candidate", "rougeL does not beat champion version 2"]),
]


def _decide(case: Case, **policy_changes: object) -> Decision:
    return decide_promotion(
        case.candidate,
        case.champion,
        _policy(**(case.policy | policy_changes)),
        champion_comparisons=case.champion_comparisons,
        base_model=case.base_model,
        base_comparisons=case.base_comparisons,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_table(case: Case) -> None:
    decision = _decide(case)
    assert decision.outcome == case.outcome, decision.reasons
    assert decision.promote is (case.outcome == "promote")
    assert decision.mode == "enforce"
    assert decision.baseline == case.baseline
    assert len(decision.failed) == len(case.failed), decision.failed
    for sentence, expected in zip(decision.failed, case.failed):
        assert expected in sentence
    for expected in case.reasons:
        assert any(expected in reason for reason in decision.reasons), (expected, decision.reasons)
    passed = [r for r in decision.reasons if r.endswith(": ok")]
    assert set(decision.failed).isdisjoint(passed)
    assert set(decision.failed) <= set(decision.reasons)


@pytest.mark.parametrize(("candidate", "champion", "promote"), [
    (0.41, 0.43, True),       # a drop of 0.020000000000000018 in floats: the allowed 0.02
    (0.41, 0.430001, False),  # a millionth more than allowed: a regression, not rounding
])
def test_the_regression_check_forgives_float_rounding_and_nothing_more(candidate, champion, promote) -> None:
    decision = decide_promotion(_cand(rougeL=candidate), _champ(rougeL=champion), _policy())
    assert decision.promote is promote, decision.reasons
    assert [("regression" in f) for f in decision.failed] == ([] if promote else [True])


@pytest.mark.parametrize(("value", "promote"), [(0.3, True), (0.299999, False)])
def test_the_minimum_check_forgives_float_rounding_and_nothing_more(value, promote) -> None:
    policy = _policy(min_metrics={"rougeL": 0.1 + 0.2}, must_beat_base_model=[])  # 0.30000000000000004
    decision = decide_promotion(_cand(rougeL=value), None, policy)
    assert decision.promote is promote, decision.reasons
    assert [("below the minimum" in f) for f in decision.failed] == ([] if promote else [True])


def test_reasons_are_every_check_with_its_numbers() -> None:
    decision = _decide(CASES[0])
    assert decision.reasons == [
        "rougeL 0.450 ≥ minimum 0.300: ok",
        "rougeL 0.450 against 0.420 for champion version 2: change +0.030, within the allowed drop of 0.020: ok",
        "semantic_similarity 0.800 against 0.790 for champion version 2: change +0.010, within the allowed drop "
        "of 0.020: ok",
        "rougeL beats champion version 2: difference +0.030, CI [+0.010, +0.050] lies above 0: ok",
    ]
    assert decision.failed == []


@pytest.mark.parametrize("case", [c for c in CASES if c.id in {"passes-everything-with-champion",
                                                               "several-failures-all-listed",
                                                               "no-champion-base-not-evaluated"}],
                         ids=lambda c: c.id)
def test_dry_run_decides_the_same_but_moves_nothing(case: Case) -> None:
    enforced, dry = _decide(case), _decide(case, mode="dry-run")
    assert dry.mode == "dry-run" and dry.promote is False
    assert (dry.outcome, dry.baseline, dry.reasons, dry.failed) == (
        enforced.outcome, enforced.baseline, enforced.reasons, enforced.failed)
    assert dry.summary().startswith(f"dry-run, no alias moved: would {enforced.outcome} version 3")
    assert "dry-run" not in enforced.summary()


def test_summary_is_one_line_naming_both_sides_and_every_failure() -> None:
    promoted = _decide(CASES[0])
    assert promoted.summary() == "promote version 3 against champion version 2: all checks passed"
    rejected = _decide(next(c for c in CASES if c.id == "several-failures-all-listed"))
    line = rejected.summary()
    assert "\n" not in line
    assert line.startswith("reject version 3 against champion version 2: 4 check(s) failed: ")
    assert all(sentence in line for sentence in rejected.failed)
    first = _decide(next(c for c in CASES if c.id == "no-champion-no-base-policy"))
    assert first.summary() == "promote version 3 with nothing to compare against: all checks passed"


def test_a_comparison_filed_under_another_metric_is_a_wiring_bug() -> None:
    with pytest.raises(ValueError, match="holds the comparison of 'bleu'"):
        decide_promotion(_cand(rougeL=0.45), _champ(rougeL=0.42), _policy(must_beat_champion=["rougeL"]),
                         champion_comparisons={"rougeL": _cmp("bleu", 0.03, 0.01, 0.05)})


def test_champion_comparisons_without_a_champion_are_a_wiring_bug() -> None:
    with pytest.raises(ValueError, match="champion is None"):
        decide_promotion(_cand(rougeL=0.45), None, _policy(),
                         champion_comparisons={"rougeL": _cmp("rougeL", 0.03, 0.01, 0.05)})


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"outcome": "promote", "promote": True, "failed": ["x"], "reasons": ["x"]}, "does not match"),
        ({"outcome": "reject", "promote": False, "failed": [], "reasons": []}, "does not match"),
        ({"outcome": "promote", "promote": False, "failed": [], "reasons": []}, "contradicts"),
        ({"outcome": "reject", "promote": True, "failed": ["x"], "reasons": ["x"]}, "contradicts"),
        ({"outcome": "reject", "promote": False, "failed": ["x"], "reasons": []}, "missing from reasons"),
    ],
    ids=["promote-with-failures", "reject-without-failures", "enforced-promote-that-does-not-move",
         "reject-that-moves", "failure-not-in-reasons"],
)
def test_an_inconsistent_decision_cannot_be_built(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Decision(mode="enforce", baseline="champion", **fields)


def test_not_measured_survives_a_json_round_trip() -> None:
    evaluated = _cand(rougeL=NAN, bleu=0.3)
    again = EvaluatedModel.model_validate_json(evaluated.model_dump_json())
    assert math.isnan(again.metrics["rougeL"]) and again.metrics["bleu"] == 0.3
    decision = _decide(next(c for c in CASES if c.id == "nan-minimum-fails"))
    assert Decision.model_validate_json(decision.model_dump_json()) == decision


# --- alias moves ----------------------------------------------------------------


@pytest.mark.parametrize(
    "champion, previous, candidate, moves",
    [
        (None, None, "1", [("champion", None, "1")]),
        ("2", None, "3", [("previous", None, "2"), ("champion", "2", "3")]),
        ("2", "1", "3", [("previous", "1", "2"), ("champion", "2", "3")]),
        ("3", "2", "3", []),
        ("2", "2", "3", [("champion", "2", "3")]),
    ],
    ids=["first-champion", "second-champion", "third-champion", "rerun-is-idempotent",
         "finishes-an-interrupted-promotion"],
)
def test_alias_moves(champion: str | None, previous: str | None, candidate: str, moves: list) -> None:
    assert alias_moves(champion, candidate, current_previous=previous) == moves


def test_alias_moves_need_a_version() -> None:
    with pytest.raises(ValueError, match="registered model version"):
        alias_moves("2", "")


def test_rollback_moves_champion_back_and_removes_previous() -> None:
    moves = rollback_moves("3", "2")
    assert moves == [("champion", "3", "2"), ("previous", "2", None)]
    assert moves[0] == AliasMove(alias="champion", from_version="3", to_version="2")


@pytest.mark.parametrize(
    "champion, previous, message",
    [
        (None, None, "no @champion to roll back"),
        (None, "2", "no @champion to roll back"),
        ("3", None, "no @previous version to roll back to"),
        ("3", "3", "both version 3"),
    ],
    ids=["nothing-served", "previous-without-champion", "no-previous", "previous-is-champion"],
)
def test_rollback_errors(champion: str | None, previous: str | None, message: str) -> None:
    with pytest.raises(RollbackError, match=message):
        rollback_moves(champion, previous)


def _apply(aliases: dict[str, str], moves: list[AliasMove]) -> None:
    """A registry stand-in that insists each move starts where it says it does."""
    for alias, before, after in moves:
        assert aliases.get(alias) == before, (alias, aliases)
        if after is None:
            del aliases[alias]
        else:
            aliases[alias] = after


def test_promote_rollback_promote_lifecycle() -> None:
    aliases: dict[str, str] = {}
    for version in ["1", "2", "3"]:
        _apply(aliases, alias_moves(aliases.get("champion"), version, current_previous=aliases.get("previous")))
    assert aliases == {"champion": "3", "previous": "2"}

    _apply(aliases, alias_moves("3", "3", current_previous="2"))  # a rerun changes nothing
    assert aliases == {"champion": "3", "previous": "2"}

    _apply(aliases, rollback_moves(aliases.get("champion"), aliases.get("previous")))
    assert aliases == {"champion": "2"}
    with pytest.raises(RollbackError, match="no @previous"):  # no silent ping-pong back to 3
        rollback_moves(aliases.get("champion"), aliases.get("previous"))

    _apply(aliases, alias_moves(aliases.get("champion"), "4", current_previous=aliases.get("previous")))
    assert aliases == {"champion": "4", "previous": "2"}
