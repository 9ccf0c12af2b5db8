"""Counting a canary's traffic: the serving request log and feedback store, read for the watched window.

``sluice serve`` writes one JSON line per generation request to ``<state_dir>/requests.jsonl``; a request
for the default model that the canary split routed carries ``"canary": true`` and the ``alias`` that
answered it (``challenger`` or the main alias) with its ``model_version``. Only those are compared: both
sides then saw the same kind of traffic. Ratings come from ``<state_dir>/feedback.db`` (read-only), joined
on the response id. Nothing here is kept in memory between runs: a restarted watcher counts again from
the window's start.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluice.core.evaluation.metrics.refusal import is_refusal
from sluice.core.promotion.canary import CanaryEvidence, SideTraffic
from sluice.core.registry.client import CHALLENGER


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


def log_records(log_path: Path, marks: list[str]) -> Iterator[dict[str, Any]]:
    """The request log's records whose line contains one of ``marks`` (a cheap test before the JSON parse);
    a missing log is no traffic yet, and only the line being written may be incomplete."""
    if not log_path.is_file():
        return
    with log_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not any(mark in line for mark in marks):  # most lines: skip the JSON parse
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                if line.endswith("\n"):
                    raise ValueError(f"{log_path}:{number} is not a JSON line: {error}") from None


def record_time(record: dict[str, Any]) -> datetime:
    at = datetime.fromisoformat(record["time"])
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def latest_ratings(feedback_db: Path, response_ids: set[str]) -> dict[str, int]:
    """The latest rating of each answer that has one (none when the store does not exist yet)."""
    if not response_ids or not feedback_db.is_file():
        return {}
    connection = sqlite3.connect(f"file:{feedback_db}?mode=ro", uri=True, timeout=30)
    try:
        rows = connection.execute("SELECT response_id, rating FROM feedback ORDER BY id").fetchall()
    finally:
        connection.close()
    return {rid: int(rating) for rid, rating in rows if rid in response_ids}  # later rows win


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


def measure_canary(log_path: Path, feedback_db: Path, *, challenger: str, champion: str, started: datetime,
                   now: datetime | None = None) -> CanaryEvidence:
    """Both sides' traffic from ``started`` until now."""
    sides = canary_records(log_path, started, {"challenger": challenger, "champion": champion})
    ratings = latest_ratings(feedback_db, {r["id"] for records in sides.values() for r in records if r.get("id")})
    return CanaryEvidence(challenger=side_traffic(challenger, sides["challenger"], ratings),
                          champion=side_traffic(champion, sides["champion"], ratings), started=started,
                          measured_at=now or datetime.now(UTC))
