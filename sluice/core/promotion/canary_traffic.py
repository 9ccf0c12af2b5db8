"""Counting a canary's traffic: the serving request log and feedback store, read for the watched window.

``sluice serve`` writes one JSON line per generation request to ``<state_dir>/requests.jsonl``; a request
for the default model that the canary split routed carries ``"canary": true`` and the ``alias`` that
answered it (``challenger`` or the main alias) with its ``model_version``. Only those are compared: both
sides then saw the same kind of traffic. Ratings come from ``<state_dir>/feedback.db`` (read-only), joined
on the response id. When a judge is configured (``evaluation.judge.model``), each side's latest
``judge_sample`` answers are rated by it too (sluice.core.promotion.judge_checks). Nothing here is kept in
memory between runs: a restarted watcher counts again from the window's start.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluice.core.config.sections import JudgeConfig
from sluice.core.evaluation.metrics.refusal import is_refusal
from sluice.core.promotion.canary import CanaryEvidence, SideTraffic
from sluice.core.registry.client import CHALLENGER
from sluice.core.request_log import chat_text, latest_ratings, log_records, record_time


def canary_records(log_path: Path, since: datetime, versions: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The canary-routed requests since ``since`` per side; ``versions`` maps each side ("challenger",
    "champion") to the version whose answers count for it. A missing log is no traffic yet."""
    sides: dict[str, list[dict[str, Any]]] = {side: [] for side in versions}
    for record in log_records(log_path, ['"canary": true']):
        if not record.get("canary") or record_time(record) < since:
            continue
        side = "challenger" if record.get("alias") == CHALLENGER else "champion"
        if record.get("model_version") == versions.get(side):
            sides[side].append(record)
    return sides


def side_traffic(version: str, records: list[dict[str, Any]], ratings: dict[str, int]) -> SideTraffic:
    """One side's counts; client errors (4xx) are left out: they say nothing about the model."""
    answered = [r for r in records if r.get("status") == 200]
    errors = [r for r in records if int(r.get("status") or 0) >= 500]
    texts = [str(r.get("completion") or "") for r in answered]
    rated = [ratings[r["id"]] for r in answered if r.get("id") in ratings]
    tokens = [int(r.get("completion_tokens") or 0) for r in answered]
    return SideTraffic(version=version, requests=len(answered) + len(errors), errors=len(errors),
                       p95_latency_ms=_p95([float(r["latency_ms"]) for r in answered]),
                       empty=sum(1 for t in texts if not t.strip()), refusals=sum(1 for t in texts if is_refusal(t)),
                       mean_completion_tokens=sum(tokens) / len(tokens) if tokens else None,
                       ratings=len(rated), mean_rating=sum(rated) / len(rated) if rated else None)


def _p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def judged_side(side: SideTraffic, records: list[dict[str, Any]], judge: JudgeConfig, sample: int) -> SideTraffic:
    """``side`` with the judge's reference-free scores of its latest ``sample`` answers."""
    from sluice.core.promotion.judge_checks import judge_scores

    assert judge.model is not None
    latest = [r for r in records if r.get("status") == 200][-sample:]
    prompts, answers = [chat_text(r.get("prompt")) for r in latest], [str(r.get("completion") or "") for r in latest]
    scores = judge_scores(prompts, answers, model=judge.model, timeout_seconds=judge.timeout_seconds)
    return side.model_copy(update={"judged": scores.judged, "judge_failed": scores.failed,
                                   "mean_judge_score": scores.mean})


def measure_canary(log_path: Path, feedback_db: Path, *, challenger: str, champion: str, started: datetime,
                   judge: JudgeConfig | None = None, judge_sample: int = 20,
                   now: datetime | None = None) -> CanaryEvidence:
    """Both sides' traffic from ``started`` until now; rated by the judge too when ``judge`` names a model."""
    sides = canary_records(log_path, started, {"challenger": challenger, "champion": champion})
    ratings = latest_ratings(feedback_db, {r["id"] for records in sides.values() for r in records if r.get("id")})
    counted = {name: side_traffic(version, sides[name], ratings)
               for name, version in (("challenger", challenger), ("champion", champion))}
    judge_model = judge.model if judge is not None else None
    if judge is not None and judge_model:
        counted = {name: judged_side(side, sides[name], judge, judge_sample) for name, side in counted.items()}
    return CanaryEvidence(challenger=counted["challenger"], champion=counted["champion"], started=started,
                          measured_at=now or datetime.now(UTC), judge_model=judge_model or None)
