"""Reading ``sluice serve``'s request log, ``<serving.state_dir>/requests.jsonl``: one JSON object per request
(``time``, ``status``, ``model_version``, ``alias``, ``prompt``, ``completion``, ``id``; ``canary`` or
``shadow`` when a rollout routed it), PII already redacted.

One reader for everyone who reads it (the canary's and the shadow's counts in sluice.core.promotion, the
monitor's window in sluice.core.monitoring); it sits below both core stages, which may not import each other.
The log is read, never written: the server may be appending the last line meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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
