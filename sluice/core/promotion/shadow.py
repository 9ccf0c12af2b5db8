"""The shadow's verdict: @challenger's background answers against @champion's answers to the same requests.

Under ``promotion.rollout: shadow`` a version that passes the offline gate becomes @challenger, as under
canary (the same registry tags and ledger, sluice.core.promotion.rollout), but the champion answers every
request; serving has @challenger answer a copy of (a sample of) them in the background and logs those
answers with ``"shadow": true`` and the champion's response id (sluice.serving.shadow). :func:`measure_shadow`
pairs each shadow answer with the champion answer it copies; :func:`decide_shadow` checks the bounds
(semantic similarity, empty answers, failed shadow generations), each one sentence with its numbers, and
says promote, withdraw or watch exactly as the canary's verdict does.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from sluice.core.config.sections import JudgeConfig, ShadowConfig
from sluice.core.promotion.aliases import AliasMove
from sluice.core.promotion.canary import CanaryVerdict, _Check, _increase, trial_outcome
from sluice.core.request_log import chat_text, log_records, record_time

if TYPE_CHECKING:
    from sluice.core.evaluation.metrics.embeddings import Embedder


class ShadowEvidence(BaseModel):
    """The shadowed requests since ``started``: what @challenger answered in the background, and how its
    answers compare with the champion's answers to the same requests."""

    challenger: str
    champion: str
    started: datetime
    measured_at: datetime
    mirrored: int = 0  # shadow generations that ended (answered or failed)
    errors: int = 0  # of them, failed
    compared: int = 0  # answered shadows paired with the champion's answer they copy
    challenger_empty: int = 0  # of the compared, empty on each side
    champion_empty: int = 0
    mean_similarity: float | None = None  # MiniLM semantic similarity of the compared pairs
    judge_preference: float | None = None  # the challenger's share of the judge's preferences (ties half)
    judged: int = 0  # pairs the judge was asked about (a judge is configured) ...
    judge_failed: int = 0  # ... and of them, calls that failed or gave no verdict

    @property
    def elapsed_seconds(self) -> float:
        return (self.measured_at - self.started).total_seconds()

    def rate(self, count: int, of: int) -> float:
        return count / of if of else math.nan


class ShadowVerdict(CanaryVerdict):
    """The canary's verdict shape (so the same code concludes it and one summary tells it), as a shadow's."""

    kind: Literal["canary", "shadow"] = "shadow"


class ShadowResult(BaseModel):
    """What one look at the shadow found and did."""

    message: str
    verdict: ShadowVerdict | None = None
    evidence: ShadowEvidence | None = None
    moves: list[AliasMove] = Field(default_factory=list)


# --- measuring: the request log -------------------------------------------


class Pair(NamedTuple):
    prompt: str  # as logged (redacted), the chat's turns one a line
    champion: str
    challenger: str


def shadow_pairs(log_path: Path, since: datetime, challenger: str, champion: str) -> tuple[int, list[Pair]]:
    """Failed shadow generations of ``challenger`` since ``since``, and the answered ones paired with the
    champion answer (by ``champion``) they copy, where that is in the log."""
    shadows: list[dict[str, Any]] = []
    champion_answers: dict[str, tuple[str, str]] = {}
    for record in log_records(log_path, [f'"model_version": {json.dumps(v)}' for v in (champion, challenger)]):
        if record.get("shadow"):
            if record.get("model_version") == challenger and record_time(record) >= since:
                shadows.append(record)
        elif record.get("model_version") == champion and record.get("status") == 200 and record.get("id"):
            champion_answers[record["id"]] = (chat_text(record.get("prompt")), str(record.get("completion") or ""))
    errors = sum(1 for r in shadows if int(r.get("status") or 0) >= 500)
    pairs = [Pair(*champion_answers[r["shadows"]], str(r.get("completion") or "")) for r in shadows
             if r.get("status") == 200 and r.get("shadows") in champion_answers]
    return errors, pairs


def measure_shadow(log_path: Path, *, challenger: str, champion: str, started: datetime, embedder: Embedder,
                   judge: JudgeConfig | None = None, max_judged: int = 50,
                   now: datetime | None = None) -> ShadowEvidence:
    """The shadow evidence from ``started`` until now; similarity with ``embedder`` (MiniLM), and the judge's
    preference over the latest ``max_judged`` pairs when ``judge`` names a model."""
    from sluice.core.evaluation.metrics.text import semantic_similarity_scores
    from sluice.core.promotion.judge_checks import Preference, judge_preference

    errors, pairs = shadow_pairs(log_path, started, challenger, champion)
    similarities = semantic_similarity_scores([p.challenger for p in pairs], [p.champion for p in pairs], embedder)
    preference = Preference(None, 0, 0)
    if judge is not None and judge.model and pairs:
        judged = pairs[-max_judged:]
        preference = judge_preference([p.prompt for p in judged], [p.champion for p in judged],
                                      [p.challenger for p in judged], model=judge.model,
                                      timeout_seconds=judge.timeout_seconds)
    return ShadowEvidence(challenger=challenger, champion=champion, started=started,
                          measured_at=now or datetime.now(UTC), mirrored=len(pairs) + errors, errors=errors,
                          compared=len(pairs), challenger_empty=sum(1 for p in pairs if not p.challenger.strip()),
                          champion_empty=sum(1 for p in pairs if not p.champion.strip()),
                          mean_similarity=sum(similarities) / len(similarities) if similarities else None,
                          judge_preference=preference.challenger_share,
                          judged=preference.judged + preference.failed, judge_failed=preference.failed)


# --- deciding --------------------------------------------------------------


def decide_shadow(evidence: ShadowEvidence, policy: ShadowConfig) -> ShadowVerdict:
    """Promote, withdraw or keep watching the challenger; the same rules of due and early as the canary's."""
    due, notes = _due(evidence, policy)
    if evidence.mirrored == 0:
        checks = [_Check(False, "no shadow answer from @challenger: is serving following it (challenger in "
                                "serving.extra_aliases, a LoRA version over the served base) with a sample above 0?")]
    else:
        checks = [
            _increase("failed shadow generations", evidence.rate(evidence.errors, evidence.mirrored), 0.0,
                      policy.max_error_rate_increase),
            _increase("empty answers", evidence.rate(evidence.challenger_empty, evidence.compared),
                      evidence.rate(evidence.champion_empty, evidence.compared), policy.max_empty_rate_increase),
            _similarity(evidence.mean_similarity, evidence.compared, policy.min_mean_similarity),
        ]
        if evidence.judged:  # a judge is configured (none: not part of the verdict)
            checks.append(_preference(evidence, policy.min_judge_preference))
    failed = [c.sentence for c in checks if not c.passed]
    outcome = trial_outcome(failed, due, notes, f"{evidence.mirrored} shadowed requests", evidence.mirrored,
                            policy.early_withdraw_after)
    traffic = f"{evidence.compared} of {evidence.mirrored} shadowed requests compared over " \
              f"{evidence.elapsed_seconds:.0f} s"
    return ShadowVerdict(outcome=outcome, due=due, challenger=evidence.challenger, champion=evidence.champion,
                         reasons=notes + [c.sentence for c in checks], failed=failed, traffic=traffic)


def _due(evidence: ShadowEvidence, policy: ShadowConfig) -> tuple[bool, list[str]]:
    elapsed, compared = evidence.elapsed_seconds, evidence.compared
    window_over = policy.window_seconds is not None and elapsed >= policy.window_seconds
    enough = policy.min_requests is not None and compared >= policy.min_requests
    wanted = [f"{policy.window_seconds:g} s" if policy.window_seconds is not None else "",
              f"{policy.min_requests} compared answers" if policy.min_requests is not None else ""]
    state, waits_for = ("due" if window_over or enough else "not due yet"), " or ".join(w for w in wanted if w)
    note = f"verdict {state}: {elapsed:.0f} s and {compared} compared answers (due at {waits_for})"
    return window_over or enough, [note]


def _similarity(mean: float | None, compared: int, bound: float) -> _Check:
    if mean is None:
        return _Check(False, "semantic similarity to @champion's answers: not measured (no answered shadow paired "
                             "with the champion's answer), so a change cannot be ruled out")
    head = f"semantic similarity to @champion's answers {mean:.3f} on average over {compared} answers"
    if mean >= bound - 1e-9:
        return _Check(True, f"{head}, at least the required {bound:.3f}: ok")
    return _Check(False, f"{head}, below the required {bound:.3f}")


def _preference(evidence: ShadowEvidence, bound: float) -> _Check:
    if evidence.judge_preference is None:
        return _Check(False, f"judge's preference: all {evidence.judge_failed} judge calls failed, so a worse "
                             "challenger cannot be ruled out")
    head = (f"judge's preference for @challenger {evidence.judge_preference:.2f} over "
            f"{evidence.judged - evidence.judge_failed} judged pairs (0.50: as good as @champion)")
    if evidence.judge_preference >= bound - 1e-9:
        return _Check(True, f"{head}, at least the required {bound:.2f}: ok")
    return _Check(False, f"{head}, below the required {bound:.2f}")


def shadow_report(model_name: str, result: ShadowResult) -> str:
    """The watch run's markdown report under rollout shadow: the numbers, the verdict and every reason."""
    verdict, evidence = result.verdict, result.evidence
    if verdict is None or evidence is None:
        return f"# {model_name}: no shadow judged\n\n{result.message}\n"
    window = (f"{evidence.started.isoformat(timespec='seconds')} → "
              f"{evidence.measured_at.isoformat(timespec='seconds')} ({evidence.elapsed_seconds:.0f} s)")
    shadowed = (f"{evidence.mirrored} ({evidence.errors} failed), compared with @champion (version "
                f"{evidence.champion}): {evidence.compared}")
    judged = (f"{_num(evidence.judge_preference)} ({evidence.judged} pairs, {evidence.judge_failed} failed)"
              if evidence.judged else "no judge configured")
    lines = [f"# {model_name}: shadow of version {evidence.challenger}: {verdict.outcome.upper()}", "",
             f"- window: {window}", f"- shadowed requests: {shadowed}",
             f"- empty answers: {evidence.challenger_empty} shadow, {evidence.champion_empty} champion",
             f"- mean semantic similarity: {_num(evidence.mean_similarity)}",
             f"- judge's preference for @challenger: {judged}", "",
             f"**Verdict:** {verdict.summary()}", "", *[f"- {reason}" for reason in verdict.reasons]]
    if result.moves:
        lines += ["", "Alias moves:", *[f"- @{alias}: {old or '—'} → {new or '—'}" for alias, old, new in result.moves]]
    return "\n".join(lines + ["", result.message]) + "\n"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
