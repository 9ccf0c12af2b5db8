"""Feedback on served answers, kept durably, and turned into preference data.

``<state_dir>/feedback.db`` (SQLite, WAL) has two tables:

- ``responses`` — every answer the server gave: its id (``chatcmpl-…`` /
  ``cmpl-…``), the model version, the prompt (chat messages or completion
  text), the completion and its finish reason;
- ``feedback`` — what clients sent to ``POST /v1/feedback``: the response id,
  a **rating from 1 (bad) to 5 (good)** (thumbs-up/down clients send 5/1), an
  optional ``preferred`` answer (what the model should have said) and an
  optional comment; and, once exported, the lakeFS commit it went into.

The server redacts PII from all text before it is stored here, the same way
ingest would, so nothing in this file needs cleaning again.

:func:`preference_pairs` turns unexported feedback into rows of the canonical
``preference`` kind (``prompt``, ``chosen``, ``rejected``, see
:mod:`sluice.core.data.kinds`): a preferred answer is *chosen* over the served one,
and of two answers to the same prompt with different ratings the better one is
*chosen* over the worse. After the rows are committed, :func:`mark_exported`
records the commit so the same feedback is never exported twice.

The preference kind's prompt is the chat before the answer, so a chat request's
messages are its prompt as they were sent (system turn and earlier turns
included: training adds its own system prompt only to a prompt without one),
and a completion request's prompt text is one user turn. Only a chat that does
not end with the user's turn (the answer would not follow a question) makes no
pair; such feedback stays unexported and is counted in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sluice.core.private_files import create_private

log = logging.getLogger("sluice.serving")

RATING_MIN, RATING_MAX = 1, 5
FEEDBACK_SOURCE = "sluice-serve-feedback"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    endpoint TEXT NOT NULL,            -- chat | completion
    model_version TEXT NOT NULL,
    prompt_json TEXT NOT NULL,         -- chat: list of {role, content}; completion: a string
    prompt_key TEXT NOT NULL,          -- sha256 of the canonical prompt: answers to the same prompt share it
    completion TEXT NOT NULL,
    finish_reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_prompt ON responses (prompt_key);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    response_id TEXT NOT NULL REFERENCES responses (id),
    created REAL NOT NULL,
    rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    preferred TEXT,
    comment TEXT,
    exported_commit TEXT,
    exported_at REAL
);
CREATE INDEX IF NOT EXISTS feedback_unexported ON feedback (exported_commit, response_id);
"""


class UnknownResponse(KeyError):
    """Feedback named a response id the server never gave (or whose record was lost)."""


def prompt_key(prompt: list[dict[str, str]] | str) -> str:
    canonical = prompt if isinstance(prompt, str) else [[m["role"], m["content"]] for m in prompt]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode()).hexdigest()


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    create_private(path)  # prompts and answers: owner-only before SQLite writes a byte (its WAL copies the mode)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.executescript(_SCHEMA)
    return connection


class FeedbackStore:
    """The server's handle on ``feedback.db``; safe to use from several threads."""

    def __init__(self, path: Path):
        self.path = path
        self._connection = _connect(path)
        self._lock = threading.Lock()

    def record_response(self, response_id: str, *, endpoint: str, model_version: str,
                        prompt: list[dict[str, str]] | str, completion: str, finish_reason: str) -> None:
        """Keep an answer so feedback on it can name it (texts stored as given: redact first)."""
        with self._lock:
            self._connection.execute("PRAGMA synchronous=NORMAL")  # survives a crash of the server process
            self._connection.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (response_id, time.time(), endpoint, model_version, json.dumps(prompt, ensure_ascii=False),
                 prompt_key(prompt), completion, finish_reason))

    def add_feedback(self, response_id: str, rating: int, preferred: str | None = None,
                     comment: str | None = None) -> int:
        """Store feedback on a response; its id. Raises :class:`UnknownResponse`."""
        if not RATING_MIN <= rating <= RATING_MAX:
            raise ValueError(f"rating must be between {RATING_MIN} and {RATING_MAX}, got {rating}")
        with self._lock:
            known = self._connection.execute("SELECT 1 FROM responses WHERE id = ?", (response_id,)).fetchone()
            if known is None:
                raise UnknownResponse(response_id)
            self._connection.execute("PRAGMA synchronous=FULL")  # feedback is rare and precious: fsync it
            cursor = self._connection.execute(
                "INSERT INTO feedback (response_id, created, rating, preferred, comment) VALUES (?, ?, ?, ?, ?)",
                (response_id, time.time(), rating, preferred, comment))
            return int(cursor.lastrowid or 0)

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def _preference_prompt(endpoint: str, prompt: Any) -> list[dict[str, str]] | str | None:
    """The preference kind's prompt for a stored prompt: a chat's messages, a
    completion's text; None for a chat whose last turn is not the user's."""
    if endpoint == "completion":
        return str(prompt)
    if prompt and prompt[-1]["role"] == "user":
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    return None


def preference_pairs(db_path: Path | str) -> list[dict[str, Any]]:
    """Unexported feedback as ``preference`` rows: ``{"prompt", "chosen", "rejected", "source",
    "feedback_ids"}`` (drop ``feedback_ids`` before ingesting; pass them to :func:`mark_exported`).

    Each feedback is used at most once: first a ``preferred`` answer against the served
    completion, then, per prompt, the best-rated against the worst-rated answer (their
    latest ratings; equal ratings or equal texts make no pair). Identical pairs are one row
    with all their feedback ids.
    """
    connection = _connect(Path(db_path))
    try:
        rows = connection.execute(
            "SELECT f.id, f.response_id, f.rating, f.preferred, r.endpoint, r.prompt_json, r.prompt_key, "
            "r.completion FROM feedback f JOIN responses r ON r.id = f.response_id "
            "WHERE f.exported_commit IS NULL ORDER BY f.id").fetchall()
    finally:
        connection.close()
    pairs: dict[tuple[str, str, str], dict[str, Any]] = {}
    used: set[int] = set()
    not_after_user = 0

    def pair(prompt: list[dict[str, str]] | str, chosen: str, rejected: str, ids: list[int]) -> None:
        # the same correction sent twice is one preference row carrying both feedback ids, not a duplicate
        key = (json.dumps(prompt, ensure_ascii=False), chosen, rejected)
        row = pairs.setdefault(key, {"prompt": prompt, "chosen": chosen, "rejected": rejected,
                                     "source": FEEDBACK_SOURCE, "feedback_ids": []})
        row["feedback_ids"] = sorted({*row["feedback_ids"], *ids})
        used.update(ids)

    for fid, _rid, _rating, preferred, endpoint, prompt_json, _key, completion in rows:
        if not preferred or not preferred.strip() or preferred.strip() == completion.strip():
            continue
        prompt = _preference_prompt(endpoint, json.loads(prompt_json))
        if prompt is None:
            not_after_user += 1
            continue
        pair(prompt, preferred.strip(), completion.strip(), [fid])

    by_response: dict[str, dict[str, Any]] = {}
    for fid, rid, rating, _preferred, endpoint, prompt_json, key, completion in rows:
        if fid in used:
            continue
        entry = by_response.setdefault(rid, {"ids": [], "endpoint": endpoint, "prompt_json": prompt_json,
                                             "key": key, "completion": completion.strip()})
        entry["ids"].append(fid)
        entry["rating"] = rating  # rows are in id order: the latest rating wins
        entry["latest"] = fid
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for entry in by_response.values():
        by_prompt.setdefault(entry["key"], []).append(entry)
    for answers in by_prompt.values():
        if len(answers) < 2:
            continue
        best = max(answers, key=lambda a: (a["rating"], a["latest"]))
        worst = min(answers, key=lambda a: (a["rating"], -a["latest"]))
        if best["rating"] == worst["rating"] or best["completion"] == worst["completion"]:
            continue
        prompt = _preference_prompt(best["endpoint"], json.loads(best["prompt_json"]))
        if prompt is None:
            not_after_user += 1
            continue
        pair(prompt, best["completion"], worst["completion"], sorted(best["ids"] + worst["ids"]))
    if not_after_user:
        log.info("%d feedback item(s) on chats that do not end with the user's turn make no preference rows",
                 not_after_user)
    return list(pairs.values())


def mark_exported(db_path: Path | str, feedback_ids: Iterable[int], commit_id: str) -> int:
    """Record that these feedback items went into ``commit_id``; how many were newly marked
    (items already exported keep their first commit)."""
    ids = sorted({int(i) for i in feedback_ids})
    if not ids:
        return 0
    connection = _connect(Path(db_path))
    try:
        connection.execute("PRAGMA synchronous=FULL")
        with connection:
            connection.execute("BEGIN")
            changed = 0
            for first in range(0, len(ids), 500):
                chunk = ids[first:first + 500]
                cursor = connection.execute(
                    f"UPDATE feedback SET exported_commit = ?, exported_at = ? WHERE exported_commit IS NULL "
                    f"AND id IN ({', '.join('?' * len(chunk))})", (commit_id, time.time(), *chunk))
                changed += cursor.rowcount
        return changed
    finally:
        connection.close()
