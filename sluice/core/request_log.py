"""Reading ``sluice serve``'s request log, ``<serving.state_dir>/requests.jsonl``: one JSON object per request
(``time``, ``status``, ``model_version``, ``alias``, ``prompt``, ``completion``, ``id``; ``canary`` or
``shadow`` when a rollout routed it), PII already redacted.

One reader for everyone who reads it (the canary's and the shadow's counts in sluice.core.promotion, the
monitor's window in sluice.core.monitoring, the live-eval export in sluice.core.data), and of the ratings its
answers got in the serving feedback store; it sits below the core stages, which may not import each other.
The log is read, never written: the server may be appending the last line meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REQUEST_LOG = "requests.jsonl"  # its name in serving.state_dir


def log_records(log_path: Path, marks: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The log's records, in order; with ``marks``, only those whose line contains one of them (a cheap test
    before the JSON parse). A missing log is no traffic yet, and a torn last line (the server writing it
    now) is not a record yet; any other line that is not JSON is an error naming the file and line."""
    if not log_path.is_file():
        return
    with log_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip() or (marks is not None and not any(mark in line for mark in marks)):
                continue  # most lines under marks: skip the JSON parse
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                if line.endswith("\n"):
                    raise ValueError(f"{log_path}:{number} is not a JSON record: {error.msg}") from None
                return  # the line being appended right now is the last one


def record_time(record: dict[str, Any], log_path: Path | None = None) -> datetime:
    """When the request was logged, in UTC (a naive time is taken as UTC)."""
    try:
        moment = datetime.fromisoformat(str(record["time"]))
    except (KeyError, ValueError) as error:
        where = f"{log_path}: " if log_path else ""
        raise ValueError(f"{where}record {record.get('id')!r} has no ISO 'time' ({error})") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def chat_text(prompt: Any) -> str:
    """A logged prompt as one text: a chat's turns one a line (``role: content``), a completion's text as is."""
    if isinstance(prompt, list):
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt if isinstance(m, dict))
    return str(prompt or "")


def user_words(prompt: Any) -> str:
    """The user's words of a logged prompt: the last user turn of a chat, or a completion's text."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(prompt if isinstance(prompt, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def latest_ratings(feedback_db: Path, response_ids: Iterable[str]) -> dict[str, int]:
    """Response id → its latest rating in the serving feedback store, for those of ``response_ids`` that have
    one (none without a store). Read-only (the server may be writing), only the wanted ids, 500 at a time."""
    wanted = sorted({i for i in response_ids if i})
    if not wanted or not feedback_db.is_file():
        return {}
    connection = sqlite3.connect(f"file:{feedback_db}?mode=ro", uri=True, timeout=30)
    try:
        latest: dict[str, int] = {}
        for first in range(0, len(wanted), 500):
            chunk = wanted[first:first + 500]
            rows = connection.execute(
                f"SELECT response_id, rating FROM feedback WHERE response_id IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY id", chunk).fetchall()
            latest.update({response_id: int(rating) for response_id, rating in rows})  # id order: the last wins
        return latest
    finally:
        connection.close()
