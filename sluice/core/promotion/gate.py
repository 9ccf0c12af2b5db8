"""The promotion gate: may a newly evaluated model version become @champion?

:func:`decide_promotion` is a plain function — no Prefect, no MLflow, no I/O —
so the rule that guards serving is tested by table and reads in one place. It
turns the candidate's metrics, the champion's metrics on the same eval data
(or, before there is a champion, the base model's) and the policy
(:class:`~sluice.core.config.PromotionConfig`) into a :class:`Decision` whose
reasons a release manager can read: every check, passed or failed, with its
numbers.

Rules that matter more than they look:

- A metric that was not measured (missing or NaN) fails every check it is in.
  "Could not tell" is never "good enough".
- No champion yet is its own branch, said out loud in the reasons; a missing
  champion is never treated as "nothing to regress against, so promote".
- A metric has a direction (:func:`~sluice.core.evaluation.metrics.direction.metric_direction`):
  for a lower-is-better one (the probes' leaks) the "minimum" is a ceiling and
  a regression is a rise. Every check reads the direction from there.
- A gate miss is a normal outcome (``outcome="reject"``), not an exception.
  Exceptions are kept for wiring bugs (a comparison filed under the wrong
  metric) and for impossible alias moves (:class:`RollbackError`).

Which aliases a promotion or a rollback then moves is ``aliases.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, model_validator

from sluice.core.config import PromotionConfig
from sluice.core.evaluation.metrics.direction import metric_direction
from sluice.core.evaluation.results import Comparison, EvaluatedModel, EvaluationReport

DecisionTag = Literal["promoted", "rejected", "dry-run-promote", "dry-run-reject"]

# 0.41 - 0.43 is -0.020000000000000018 in floats: without this slack a drop of
# exactly the allowed size would fail, though the policy says it is allowed.
_FLOAT_SLACK = 1e-9


class _Result(BaseModel):
    # Frozen: a decision and its evidence are records, not working state.
    # NaN ("not measured") survives a JSON round trip instead of turning into null.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class Decision(_Result):
    """Whether the candidate passed the gate, and every reason why or why not."""

    outcome: Literal["promote", "reject"]
    promote: bool  # whether aliases move: outcome == "promote" and mode == "enforce"
    mode: Literal["enforce", "dry-run"]
    baseline: Literal["champion", "base_model", "none"]  # what the candidate was compared with
    reasons: list[str]  # context, then every check as a sentence with its numbers
    failed: list[str]  # the failed checks' sentences only (each also in reasons)
    candidate: str = "the candidate"  # label, for the summary
    compared_with: str | None = None  # e.g. "champion version 2", for the summary

    @model_validator(mode="after")
    def _consistent(self) -> Decision:
        # A hand-built Decision that says "promote" with failed checks would move
        # aliases on a failing model; refuse it here rather than trust every caller.
        if (self.outcome == "promote") != (not self.failed):
            raise ValueError(f"outcome {self.outcome!r} does not match {len(self.failed)} failed check(s)")
        if self.promote != (self.outcome == "promote" and self.mode == "enforce"):
            raise ValueError(f"promote={self.promote} contradicts outcome {self.outcome!r} in mode {self.mode!r}")
        if missing := [f for f in self.failed if f not in self.reasons]:
            raise ValueError(f"failed checks missing from reasons: {missing}")
        return self

    def summary(self) -> str:
        """One line for logs, run names and notifications."""
        verb = self.outcome if self.mode == "enforce" else f"dry-run, no alias moved: would {self.outcome}"
        against = f"against {self.compared_with}" if self.compared_with else "with nothing to compare against"
        if not self.failed:
            return f"{verb} {self.candidate} {against}: all checks passed"
        return f"{verb} {self.candidate} {against}: {len(self.failed)} check(s) failed: " + "; ".join(self.failed)

    @property
    def tag(self) -> DecisionTag:
        """The model version's ``sluice.decision`` tag."""
        if self.mode == "dry-run":
            return "dry-run-promote" if self.outcome == "promote" else "dry-run-reject"
        return "promoted" if self.outcome == "promote" else "rejected"


class _Check(NamedTuple):
    passed: bool
    sentence: str


def decide_promotion(
    candidate: EvaluatedModel,
    champion: EvaluatedModel | None,
    policy: PromotionConfig,
    *,
    champion_comparisons: Mapping[str, Comparison] | None = None,
    base_model: EvaluatedModel | None = None,
    base_comparisons: Mapping[str, Comparison] | None = None,
) -> Decision:
    """Decide whether ``candidate`` replaces ``champion`` (None: there is none yet).

    Checks, all run and all reported (one failure does not hide another):

    1. every ``policy.min_metrics`` bound (a floor, or a ceiling for a
       lower-is-better metric), always;
    2. with a champion: every ``policy.max_regression`` tolerance on how much
       worse the candidate is than the champion, and for
       ``policy.must_beat_champion`` a paired comparison whose CI lies wholly
       on the better side of 0;
    3. with no champion: for ``policy.must_beat_base_model`` such a paired
       comparison with the base model.

    The outcome is "promote" iff no check failed. In dry-run mode the outcome
    and reasons are the same, but ``promote`` is False.

    Raises ValueError only for wiring bugs: a comparison filed under another
    metric's name, or champion comparisons with no champion.
    """
    _check_keys(champion_comparisons, "champion_comparisons")
    _check_keys(base_comparisons, "base_comparisons")
    if champion is None and champion_comparisons:
        raise ValueError("champion_comparisons were given but champion is None: they compare with which model?")

    notes: list[str] = []
    checks = [_minimum(m, _metric(candidate, m), floor) for m, floor in policy.min_metrics.items()]
    baseline: Literal["champion", "base_model", "none"]

    if champion is not None:
        baseline, compared_with = "champion", f"champion {champion.label}"
        comparisons = champion_comparisons or {}
        checks += [
            _regression(m, _metric(candidate, m), _metric(champion, m), tolerance, compared_with)
            for m, tolerance in policy.max_regression.items()
        ]
        checks += [_beats(m, comparisons.get(m), compared_with) for m in policy.must_beat_champion]
    elif policy.must_beat_base_model or base_model is not None:
        baseline = "base_model"
        compared_with = _base_phrase(base_model)
        wanted = ", ".join(policy.must_beat_base_model)
        if not policy.must_beat_base_model:
            notes.append("no champion yet: this would be the first champion; the policy asks nothing of it "
                         "against the base model (must_beat_base_model is empty)")
        elif base_model is None or base_comparisons is None:
            notes.append(f"no champion yet: the first champion must beat the base model on {wanted}")
            what = "was not evaluated" if base_model is None else "was not evaluated against the candidate"
            checks.append(_Check(False, f"the base model {what} (no paired comparison), so the candidate cannot "
                                        f"show it beats it on {wanted}"))
        else:
            notes.append(f"no champion yet: the first champion must beat {compared_with} on {wanted}")
            checks += [_beats(m, base_comparisons.get(m), compared_with) for m in policy.must_beat_base_model]
    else:
        baseline, compared_with = "none", None
        notes.append("no champion yet and no base model to beat (must_beat_base_model is empty): "
                     "only the minimums apply")

    if not checks:
        notes.append("the policy has no checks that apply here, so nothing can fail")
    failed = [c.sentence for c in checks if not c.passed]
    outcome: Literal["promote", "reject"] = "reject" if failed else "promote"
    return Decision(
        outcome=outcome,
        promote=outcome == "promote" and policy.mode == "enforce",
        mode=policy.mode,
        baseline=baseline,
        reasons=notes + [c.sentence for c in checks],
        failed=failed,
        candidate=candidate.label,
        compared_with=compared_with,
    )


def decide_on_report(report: EvaluationReport, candidate_version: str, policy: PromotionConfig) -> Decision:
    """The gate for a registered candidate, on the evaluation report of its pipeline run: against the
    champion when there is one, else against the base model."""
    candidate = report.candidate.model_copy(update={"label": f"version {candidate_version}",
                                                    "version": candidate_version})
    champion = report.champion
    if champion is not None:
        champion = champion.model_copy(update={"label": f"version {champion.version}"})
    return decide_promotion(candidate, champion, policy,
                            champion_comparisons=report.comparisons if champion else None,
                            base_model=report.base_model.model_copy(update={"label": "base model"})
                            if report.base_model else None,
                            base_comparisons=report.comparisons if report.base_model else None)


def decision_evidence(decision: Decision, report: EvaluationReport) -> dict:
    """What the ledger keeps with an alias move: the decision and the numbers it was made on."""
    return {"decision": decision.model_dump(mode="json"), "data_commit": report.eval_data.data_commit,
            "candidate": report.candidate.model_dump(mode="json"),
            "champion": report.champion.model_dump(mode="json") if report.champion else None,
            "comparisons": {k: v.model_dump(mode="json") for k, v in report.comparisons.items()}}


# --- checks: each returns one sentence with its numbers ---------------------


def _minimum(metric: str, value: float, bound: float) -> _Check:
    """The worst acceptable value: a floor, or a ceiling for a lower-is-better metric."""
    lower = metric_direction(metric) == "lower"
    name, ok, bad, past = (("maximum", "≤", ">", "above the maximum") if lower else
                           ("minimum", "≥", "<", "below the minimum"))
    if math.isnan(value):
        return _Check(False, f"{metric} was not measured ({name} {_fmt(bound, 3)}): a metric that was not "
                             "measured never passes")
    d = _digits(value, bound)
    if (value <= bound + _FLOAT_SLACK) if lower else (value >= bound - _FLOAT_SLACK):
        return _Check(True, f"{metric} {_fmt(value, d)} {ok} {name} {_fmt(bound, d)}: ok")
    return _Check(False, f"{metric} {_fmt(value, d)} {bad} {name} {_fmt(bound, d)}: {past}")


def _regression(metric: str, value: float, reference: float, tolerance: float, against: str) -> _Check:
    if math.isnan(value) or math.isnan(reference):
        where = {(True, False): "on the candidate", (False, True): f"on {against}",
                 (True, True): f"on either the candidate or {against}"}[(math.isnan(value), math.isnan(reference))]
        return _Check(False, f"{metric} was not measured {where}, so a regression against {against} "
                             "cannot be ruled out")
    change = value - reference
    d = _digits(value, reference, change, -tolerance)
    head = f"{metric} {_fmt(value, d)} against {_fmt(reference, d)} for {against}: change {_fmt(change, d, sign=True)}"
    lower = metric_direction(metric) == "lower"
    worse = "rise" if lower else "drop"
    if (change <= tolerance + _FLOAT_SLACK) if lower else (change >= -tolerance - _FLOAT_SLACK):
        return _Check(True, f"{head}, within the allowed {worse} of {_fmt(tolerance, d)}: ok")
    return _Check(False, f"{head}, a bigger {worse} than the allowed {_fmt(tolerance, d)}: regression")


def _beats(metric: str, comparison: Comparison | None, against: str) -> _Check:
    if comparison is None:
        return _Check(False, f"{metric}: no paired comparison with {against}, so beating it cannot be shown")
    if math.isnan(comparison.low):
        return _Check(False, f"{metric}: the confidence interval of the difference with {against} was not "
                             "measured, so beating it cannot be shown")
    d = _digits(comparison.mean_difference, comparison.low, comparison.high, 0.0)
    numbers = (f"difference {_fmt(comparison.mean_difference, d, sign=True)}, "
               f"CI [{_fmt(comparison.low, d, sign=True)}, {_fmt(comparison.high, d, sign=True)}]")
    lower = metric_direction(metric) == "lower"  # then a better candidate has a difference below 0
    better, worse = (comparison.high < 0, comparison.low > 0) if lower else (comparison.low > 0, comparison.high < 0)
    if better:
        return _Check(True, f"{metric} beats {against}: {numbers} lies {'below' if lower else 'above'} 0: ok")
    where = (f"lies {'above' if lower else 'below'} 0: worse" if worse else "includes 0: not a clear improvement")
    return _Check(False, f"{metric} does not beat {against}: {numbers} {where}")


# --- helpers ----------------------------------------------------------------


def _metric(model: EvaluatedModel, name: str) -> float:
    """A missing metric reads as NaN, so it fails like any other unmeasured one."""
    return model.metrics.get(name, math.nan)


def _base_phrase(base_model: EvaluatedModel | None) -> str:
    if base_model is None or base_model.label.lower() in {"base model", "the base model"}:
        return "the base model"
    return f"the base model ({base_model.label})"


def _check_keys(comparisons: Mapping[str, Comparison] | None, name: str) -> None:
    for key, comparison in (comparisons or {}).items():
        if key != comparison.metric:
            raise ValueError(f"{name}[{key!r}] holds the comparison of {comparison.metric!r}")


def _digits(*values: float) -> int:
    """Decimals enough (3 to 9) that values further apart than the float slack
    print differently, so a reason never says "0.300 < minimum 0.300"."""
    finite = [v for v in values if math.isfinite(v)]
    for d in range(3, 10):
        if not _collide(finite, d):
            return d
    return 9


def _collide(values: Iterable[float], d: int) -> bool:
    seen: dict[str, float] = {}
    for v in values:
        text = f"{abs(v):.{d}f}"  # the allowed drop prints as a positive number next to a negative change
        if text in seen and abs(abs(v) - seen[text]) > _FLOAT_SLACK:
            return True
        seen[text] = abs(v)
    return False


def _fmt(value: float, digits: int, *, sign: bool = False) -> str:
    if math.isnan(value):
        return "not measured"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
