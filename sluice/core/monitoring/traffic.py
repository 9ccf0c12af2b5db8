"""What the monitor reads: the serving request log of one window, the feedback on those answers, and the
prompts of the training data.

The request log is ``sluice serve``'s ``requests.jsonl`` (one JSON object per request, PII already redacted:
``time``, ``status``, ``model_version``, ``prompt`` — chat messages or text —, ``completion``, ``id``); the
feedback store is its ``feedback.db`` (table ``feedback``: ``response_id``, ``rating`` 1-5). Both are read,
never written: the server may be appending meanwhile (the log is read by sluice.core.request_log, as the
canary's counts read it).

A prompt is compared by the user's words: a chat request's last user turn (the new question; earlier turns
were asked before), a completion request's text; on the training side every user turn of every published
conversation (``messages`` of sft data, ``prompt`` of preference data).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sluice.core.errors import ExplainedError
from sluice.core.request_log import log_records, record_time, user_words


class RequestLogMissing(ExplainedError, FileNotFoundError):
    """No request log where the monitor looked; the message says where and how to point it elsewhere."""


class Window(BaseModel):
    """A half-open time window ``[start, end)``, in UTC."""

    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def label(self) -> str:
        return f"{self.start.isoformat()} → {self.end.isoformat()}"


class WindowTraffic(BaseModel):
    """The answered requests of one served version in one window (and what else the window held)."""

    window: Window
    version: str
    prompts: list[str]  # the user's words, one per answered request
    answers: list[str]
    response_ids: list[str]
    other_versions: int = 0  # answered by another version (a canary, a version before a promotion)
    errors: int = 0  # requests of the window answered with an error status


def aligned_window(minutes: float, end: datetime | None = None) -> Window:
    """The last complete window before ``end`` (default: now), aligned to the epoch: with 60 minutes, from one
    full hour to the next. A rerun at any moment of the next window judges the same one."""
    now = (end or datetime.now(UTC)).astimezone(UTC)
    length = minutes * 60
    if end is not None:  # an explicit end is the window's end
        stop = now
    else:
        stop = datetime.fromtimestamp(math.floor(now.timestamp() / length) * length, UTC)
    return Window(start=stop - timedelta(seconds=length), end=stop)


def read_window(path: Path, window: Window, version: str) -> WindowTraffic:
    """The window's requests answered by ``version``, streamed from the log (memory grows with the window,
    not with the log)."""
    if not path.is_file():
        raise RequestLogMissing(f"no request log at {path}: `sluice serve` writes requests.jsonl in its "
                                "serving.state_dir; set serving.state_dir (or the flow's request_log) to the "
                                "endpoint's")
    prompts: list[str] = []
    answers: list[str] = []
    ids: list[str] = []
    other = errors = 0
    for record in log_records(path):
        # a shadow answer was never served
        if record.get("shadow") or not window.contains(record_time(record, path)):
            continue
        if record.get("status") != 200:
            errors += 1
        elif str(record.get("model_version")) != str(version):
            other += 1
        else:
            prompts.append(user_words(record.get("prompt")))
            answers.append(str(record.get("completion") or ""))
            ids.append(str(record.get("id") or ""))
    return WindowTraffic(window=window, version=str(version), prompts=prompts, answers=answers, response_ids=ids,
                         other_versions=other, errors=errors)


def user_turns(value: Any) -> list[str]:
    """Every user turn of a chat (a list of messages); a plain text is one."""
    if isinstance(value, str):
        return [value]
    return [str(m.get("content") or "") for m in value or [] if isinstance(m, dict) and m.get("role") == "user"]


def training_prompts(files: Iterable[str]) -> list[str]:
    """The user turns of the published rows in these parquet files (sft ``messages`` or preference ``prompt``)."""
    import pyarrow.parquet as pq

    prompts: list[str] = []
    for file in files:
        columns = pq.ParquetFile(file).schema_arrow.names
        column = "messages" if "messages" in columns else "prompt" if "prompt" in columns else None
        if column is None:
            raise ValueError(f"{file}: no 'messages' or 'prompt' column to take training prompts from "
                             f"(columns: {', '.join(columns)})")
        for value in pq.read_table(file, columns=[column]).column(column).to_pylist():
            prompts.extend(turn for turn in user_turns(value) if turn.strip())
    return prompts
