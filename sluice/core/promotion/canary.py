"""The canary's verdict: @challenger against @champion on the same live traffic.

Under ``promotion.rollout: canary`` a version that passes the offline gate becomes @challenger and
answers a share of the requests for the default model (serving splits them by a stable hash of the
request's user). :func:`decide_canary` compares what both sides answered since then, each bound one
sentence with its numbers (all checked, all reported), and says what to do:

- ``watch``: the verdict is not due yet (too little time and too few requests) and nothing is broken
  badly enough to stop early;
- ``withdraw``: a bound is broken, and the verdict is due or the challenger has answered
  ``early_withdraw_after`` requests already;
- ``promote``: the verdict is due and every bound holds.

A bound that cannot be measured (no answer on one side) counts as broken, like an unmeasured metric at
the gate; only the feedback rating is skipped while either side has fewer than ``min_ratings``
ratings (feedback is sparse, and its absence says nothing against the challenger), and the LLM judge's
score when no judge is configured (``evaluation.judge.model``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field

from sluice.core.config.sections import CanaryConfig
from sluice.core.promotion.aliases import AliasMove

CanaryOutcome = Literal["promote", "withdraw", "watch"]


class SideTraffic(BaseModel):
    """What one side (a registry version) answered in the window, counted from the request log."""

    version: str
    requests: int = 0  # answered + failed with a server error (client errors say nothing about the model)
    errors: int = 0  # answered with a 5xx
    p95_latency_ms: float | None = None  # of the answered ones
    empty: int = 0  # answers with no text
    refusals: int = 0
    mean_completion_tokens: float | None = None
    ratings: int = 0  # feedback ratings on its answers
    mean_rating: float | None = None
    judged: int = 0  # of its latest answers, those the LLM judge rated (1-5) ...
    judge_failed: int = 0  # ... and those whose judge call failed or gave no score (counted, never scored)
    mean_judge_score: float | None = None

    @property
    def answered(self) -> int:
        return self.requests - self.errors

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else math.nan

    @property
    def empty_rate(self) -> float:
        return self.empty / self.answered if self.answered else math.nan

    @property
    def refusal_rate(self) -> float:
        return self.refusals / self.answered if self.answered else math.nan


class CanaryEvidence(BaseModel):
    """Both sides over the watched window: from ``started`` (the challenger's start) to ``measured_at``."""

    challenger: SideTraffic
    champion: SideTraffic
    started: datetime
    measured_at: datetime
    judge_model: str | None = None  # the LLM judge that rated both sides; None: no judge configured

    @property
    def elapsed_seconds(self) -> float:
        return (self.measured_at - self.started).total_seconds()


class CanaryVerdict(BaseModel):
    kind: Literal["canary", "shadow"] = "canary"  # which rollout judged it (the summary says so)
    outcome: CanaryOutcome
    due: bool  # the window is over or the challenger has answered min_requests
    challenger: str
    champion: str
    reasons: list[str]  # every check's sentence, passed or not, and notes
    failed: list[str]  # the broken bounds' sentences
    traffic: str  # requests on each side and the window, in words

    def summary(self) -> str:
        """One line for logs, the ledger and ``sluice registry history``."""
        head = f"{self.outcome} version {self.challenger} ({self.kind} against champion version {self.champion}, " \
               f"{self.traffic})"
        if self.outcome == "watch":
            return f"{head}: no verdict yet" + (f"; {len(self.failed)} bound(s) broken so far" if self.failed else "")
        if not self.failed:
            return f"{head}: every bound held"
        return f"{head}: {len(self.failed)} bound(s) broken: " + "; ".join(self.failed)


class _Check(NamedTuple):
    passed: bool
    sentence: str


def trial_outcome(failed: list[str], due: bool, notes: list[str], seen: str, count: int,
                  early_withdraw_after: int | None) -> CanaryOutcome:
    """Withdraw when a bound is broken and the verdict is due, or early once ``count`` trial requests (``seen``,
    in words, noted in ``notes``) already break one; else promote when due, watch before. Canary and shadow alike."""
    if failed and early_withdraw_after is not None and count >= early_withdraw_after and not due:
        notes.append(f"withdrawn early: {seen} (early_withdraw_after {early_withdraw_after}) already break a bound")
        return "withdraw"
    if failed and due:
        return "withdraw"
    return "promote" if due else "watch"


def decide_canary(evidence: CanaryEvidence, policy: CanaryConfig) -> CanaryVerdict:
    """Promote, withdraw or keep watching the challenger (see the module's docstring)."""
    challenger, champion = evidence.challenger, evidence.champion
    due, notes = _due(evidence, policy)
    if challenger.requests == 0:
        checks = [_Check(False, "no canary request reached @challenger: is serving following it (challenger in "
                                "serving.extra_aliases, a LoRA version over the served base) with a share above 0?")]
    else:
        checks = [
            _increase("server-error rate", challenger.error_rate, champion.error_rate,
                      policy.max_error_rate_increase),
            _latency(challenger.p95_latency_ms, champion.p95_latency_ms, policy.max_p95_latency_ratio),
            _increase("empty answers", challenger.empty_rate, champion.empty_rate, policy.max_empty_rate_increase),
            _increase("refusals", challenger.refusal_rate, champion.refusal_rate, policy.max_refusal_rate_increase),
            _length(challenger.mean_completion_tokens, champion.mean_completion_tokens, policy.max_length_drift),
            _rating(challenger, champion, policy),
            _judge(challenger, champion, evidence.judge_model, policy.min_judge_delta),
        ]
    failed = [c.sentence for c in checks if not c.passed]
    outcome = trial_outcome(failed, due, notes, f"{challenger.requests} canary requests", challenger.requests,
                            policy.early_withdraw_after)
    return CanaryVerdict(outcome=outcome, due=due, challenger=challenger.version, champion=champion.version,
                         reasons=notes + [c.sentence for c in checks], failed=failed, traffic=_traffic(evidence))


def _due(evidence: CanaryEvidence, policy: CanaryConfig) -> tuple[bool, list[str]]:
    """Whether the verdict is due, and a note saying why (or what it waits for)."""
    elapsed, answered = evidence.elapsed_seconds, evidence.challenger.requests
    window_over = policy.window_seconds is not None and elapsed >= policy.window_seconds
    enough = policy.min_requests is not None and answered >= policy.min_requests
    wanted = [f"{policy.window_seconds:g} s" if policy.window_seconds is not None else "",
              f"{policy.min_requests} challenger requests" if policy.min_requests is not None else ""]
    waits_for = " or ".join(w for w in wanted if w)
    if window_over or enough:
        return True, [f"verdict due: {elapsed:.0f} s and {answered} challenger requests (due at {waits_for})"]
    return False, [f"verdict not due yet: {elapsed:.0f} s and {answered} challenger requests (due at {waits_for})"]


def _traffic(evidence: CanaryEvidence) -> str:
    return (f"{evidence.challenger.requests} vs {evidence.champion.requests} requests over "
            f"{evidence.elapsed_seconds:.0f} s")


# --- bounds: each returns one sentence with its numbers ---------------------


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f} %"


def _increase(what: str, challenger: float, champion: float, bound: float) -> _Check:
    if math.isnan(challenger) or math.isnan(champion):
        side = "@challenger" if math.isnan(challenger) else "@champion"
        return _Check(False, f"{what}: not measured on {side} (no answers), so a rise cannot be ruled out")
    rise = challenger - champion
    head = f"{what} {_pct(challenger)} against {_pct(champion)} for @champion: {100 * rise:+.1f} points"
    if rise <= bound + 1e-12:
        return _Check(True, f"{head}, within the allowed +{100 * bound:.1f}: ok")
    return _Check(False, f"{head}, more than the allowed +{100 * bound:.1f}")


def _latency(challenger: float | None, champion: float | None, bound: float) -> _Check:
    if challenger is None or champion is None:
        side = "@challenger" if challenger is None else "@champion"
        return _Check(False, f"p95 latency: not measured on {side} (no answers), so a slowdown cannot be ruled out")
    ratio = challenger / champion if champion > 0 else math.inf
    head = f"p95 latency {challenger:.0f} ms against {champion:.0f} ms for @champion: {ratio:.2f}x"
    if ratio <= bound:
        return _Check(True, f"{head}, within the allowed {bound:.2f}x: ok")
    return _Check(False, f"{head}, more than the allowed {bound:.2f}x")


def _length(challenger: float | None, champion: float | None, bound: float) -> _Check:
    if challenger is None or champion is None:
        side = "@challenger" if challenger is None else "@champion"
        return _Check(False, f"answer length: not measured on {side} (no answers), so a drift cannot be ruled out")
    drift = abs(challenger / champion - 1) if champion > 0 else (0.0 if challenger == 0 else math.inf)
    head = (f"answer length {challenger:.1f} tokens on average against {champion:.1f} for @champion: drift "
            f"{100 * drift:.0f} %")
    if drift <= bound + 1e-12:
        return _Check(True, f"{head}, within the allowed {100 * bound:.0f} %: ok")
    return _Check(False, f"{head}, more than the allowed {100 * bound:.0f} %")


def _rating(challenger: SideTraffic, champion: SideTraffic, policy: CanaryConfig) -> _Check:
    if min(challenger.ratings, champion.ratings) < policy.min_ratings:
        return _Check(True, f"feedback rating: {challenger.ratings} rating(s) on @challenger and {champion.ratings} "
                            f"on @champion, fewer than min_ratings {policy.min_ratings} on a side: not compared")
    assert challenger.mean_rating is not None and champion.mean_rating is not None
    delta = challenger.mean_rating - champion.mean_rating
    head = (f"feedback rating {challenger.mean_rating:.2f} ({challenger.ratings}) against {champion.mean_rating:.2f} "
            f"({champion.ratings}) for @champion: {delta:+.2f}")
    if delta >= policy.min_rating_delta - 1e-12:
        return _Check(True, f"{head}, within the allowed {policy.min_rating_delta:+.2f}: ok")
    return _Check(False, f"{head}, below the allowed {policy.min_rating_delta:+.2f}")


def _judge(challenger: SideTraffic, champion: SideTraffic, model: str | None, bound: float) -> _Check:
    if model is None:
        return _Check(True, "LLM judge: no evaluation.judge.model configured: not compared")
    for side, name in ((challenger, "@challenger"), (champion, "@champion")):
        if side.mean_judge_score is None:
            return _Check(False, f"LLM judge score: not measured on {name} ({side.judge_failed} judge call(s) "
                                 "failed, none rated), so a worse challenger cannot be ruled out")
    assert challenger.mean_judge_score is not None and champion.mean_judge_score is not None
    delta = challenger.mean_judge_score - champion.mean_judge_score
    head = (f"LLM judge score (1-5) {challenger.mean_judge_score:.2f} ({challenger.judged} rated, "
            f"{challenger.judge_failed} failed) against {champion.mean_judge_score:.2f} ({champion.judged} rated, "
            f"{champion.judge_failed} failed) for @champion: {delta:+.2f}")
    if delta >= bound - 1e-12:
        return _Check(True, f"{head}, within the allowed {bound:+.2f}: ok")
    return _Check(False, f"{head}, below the allowed {bound:+.2f}")


class CanaryResult(BaseModel):
    """What one look at the canary found and did."""

    message: str
    verdict: CanaryVerdict | None = None  # None: no canary to judge
    evidence: CanaryEvidence | None = None
    moves: list[AliasMove] = Field(default_factory=list)


def canary_report(model_name: str, result: CanaryResult) -> str:
    """The watch-canary run's markdown report: both sides side by side, the verdict and every reason."""
    verdict, evidence = result.verdict, result.evidence
    if verdict is None or evidence is None:
        return f"# {model_name}: no canary judged\n\n{result.message}\n"
    c, ch = evidence.challenger, evidence.champion
    rows = [("requests (answered + server errors)", str(c.requests), str(ch.requests)),
            ("server-error rate", _pct_or_dash(c.error_rate), _pct_or_dash(ch.error_rate)),
            ("p95 latency", _ms(c.p95_latency_ms), _ms(ch.p95_latency_ms)),
            ("empty answers", _pct_or_dash(c.empty_rate), _pct_or_dash(ch.empty_rate)),
            ("refusals", _pct_or_dash(c.refusal_rate), _pct_or_dash(ch.refusal_rate)),
            ("mean answer length (tokens)", _num(c.mean_completion_tokens), _num(ch.mean_completion_tokens)),
            ("feedback rating (count)", f"{_num(c.mean_rating)} ({c.ratings})",
             f"{_num(ch.mean_rating)} ({ch.ratings})")]
    if evidence.judge_model is not None:
        rows.append((f"LLM judge score, {evidence.judge_model} (rated, failed)",
                     f"{_num(c.mean_judge_score)} ({c.judged}, {c.judge_failed})",
                     f"{_num(ch.mean_judge_score)} ({ch.judged}, {ch.judge_failed})"))
    lines = [f"# {model_name}: canary of version {c.version}: {verdict.outcome.upper()}", "",
             (f"- window: {evidence.started.isoformat(timespec='seconds')} → "
              f"{evidence.measured_at.isoformat(timespec='seconds')} ({evidence.elapsed_seconds:.0f} s)"), "",
             f"| | @challenger (version {c.version}) | @champion (version {ch.version}) |", "|---|---|---|",
             *[f"| {name} | {a} | {b} |" for name, a, b in rows], "",
             f"**Verdict:** {verdict.summary()}", "", *[f"- {reason}" for reason in verdict.reasons]]
    if result.moves:
        lines += ["", "Alias moves:", *[f"- @{alias}: {old or '—'} → {new or '—'}" for alias, old, new in result.moves]]
    lines += ["", result.message]
    return "\n".join(lines) + "\n"


def _pct_or_dash(rate: float) -> str:
    return "—" if math.isnan(rate) else _pct(rate)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
