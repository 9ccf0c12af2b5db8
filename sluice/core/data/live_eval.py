"""Live traffic on its way into the gate: sampled requests of ``sluice serve`` as rows of the ``eval`` kind.

Where the rows come from:

- the request log (``<serving.state_dir>/requests.jsonl``; PII already redacted by the server): answered
  requests (status 200), a stable sample of them (a hash of the response id, so a rerun picks the same ones);
- the prompt's last user turn, read through ``evaluation.prompt_template``: the template the gate puts an eval
  row in (``Context: {contexts}\\nQuestion: {question}``) is read backwards into ``question`` and ``contexts``.
  A prompt that does not follow it carries no passages; the eval contract needs at least one (RAGAS scores
  faithfulness against them), so such a prompt is left out and counted (``no_contexts``);
- the feedback store (``feedback.db``): the **reference** is the answer users said is right for that prompt —
  a ``preferred`` answer a client sent (the latest), else the served answer with the best latest rating at or
  above ``good_rating`` (any response to the same prompt counts). A prompt without one is left out and
  counted (``no_reference``): the gate's metrics (ROUGE, RAGAS) compare with the reference, and the contract
  rejects a whole eval batch for one empty reference, so an unreferenced row cannot travel with the others.

The same question asked twice is one row, and a question already in main's eval data is left out
(``already_published``): ingest counts rows already published as duplicates, and the eval contract caps
duplicates at 10 %, so a re-sent sample would reject the new rows with it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sluice.core.data.batch import IngestResult
from sluice.core.errors import ExplainedError
from sluice.core.request_log import log_records, user_words

LIVE_EVAL_FILE = "live-eval.jsonl"
LIVE_EVAL_SOURCE = "sluice-serve-traffic"


class RequestLogNotFound(ExplainedError, FileNotFoundError):
    """No request log where the export looked; the message says where and how to point it elsewhere."""


class LiveEvalRows(BaseModel):
    """The eval rows drawn from live traffic, and why the other sampled requests made none."""

    rows: list[dict[str, Any]]
    sampled: int  # answered requests in the sample
    no_contexts: int = 0  # the prompt does not follow the eval template
    no_reference: int = 0  # nobody rated an answer to it well, nor sent a preferred one
    duplicates: int = 0  # the same question again
    already_published: int = 0  # the question is in main's eval data already


class LiveEvalExport(BaseModel):
    sampled: int
    rows: int
    ingest: IngestResult | None = None
    message: str


def in_sample(response_id: str, rate: float) -> bool:
    """True for a ``rate`` share of response ids, the same answer for the same id every time."""
    digest = hashlib.sha256(response_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def template_reader(template: str) -> re.Pattern[str]:
    """A pattern that reads ``{contexts}`` and ``{question}`` back out of a filled-in ``template``."""
    parts = re.split(r"(\{contexts\}|\{question\})", template)
    if "{contexts}" not in parts or "{question}" not in parts:
        raise ValueError(f"evaluation.prompt_template {template!r} needs both {{contexts}} and {{question}}")
    pattern = "".join(f"(?P<{p[1:-1]}>.+?)" if p in ("{contexts}", "{question}") else re.escape(p) for p in parts)
    return re.compile(pattern, re.DOTALL)


def question_and_contexts(user_text: str, reader: re.Pattern[str], separator: str) -> tuple[str, list[str]] | None:
    """The question and passages of a prompt written with the eval template; None for any other prompt.
    A whitespace separator cannot be told from the text's own spaces: the joined passages are then one."""
    match = reader.fullmatch(user_text.strip())
    if match is None:
        return None
    joined = match["contexts"].strip()
    contexts = [joined] if not separator.strip() else [c.strip() for c in joined.split(separator) if c.strip()]
    return match["question"].strip(), contexts


def answered_requests(path: Path) -> Iterator[dict[str, Any]]:
    """The log's answered requests (status 200, with a response id), those the clients got: a shadow answer
    (@challenger's copy, never returned) is not one."""
    if not path.is_file():
        raise RequestLogNotFound(f"no request log at {path}: `sluice serve` writes requests.jsonl in its "
                                 "serving.state_dir; set serving.state_dir (or request_log) to the endpoint's")
    for record in log_records(path):
        if record.get("status") == 200 and record.get("id") and not record.get("shadow"):
            yield record


def good_references(feedback_db: Path, response_ids: list[str], good_rating: int) -> dict[str, str]:
    """Response id → the reference for its prompt: the latest preferred answer sent for any response to the
    same prompt, else the best-rated (latest rating ≥ ``good_rating``) answer to it."""
    if not response_ids or not feedback_db.is_file():
        return {}
    connection = sqlite3.connect(f"file:{feedback_db}?mode=ro", uri=True, timeout=30)  # the server may write
    try:
        keys: dict[str, str] = {}
        for first in range(0, len(response_ids), 500):
            chunk = response_ids[first:first + 500]
            keys.update(connection.execute(
                f"SELECT id, prompt_key FROM responses WHERE id IN ({', '.join('?' * len(chunk))})", chunk))
        by_key = _references_by_prompt(connection, sorted(set(keys.values())), good_rating)
    finally:
        connection.close()
    return {rid: by_key[key] for rid, key in keys.items() if key in by_key}


def _references_by_prompt(connection: sqlite3.Connection, prompt_keys: list[str], good_rating: int) -> dict[str, str]:
    preferred: dict[str, str] = {}
    latest: dict[str, tuple[str, int, int, str]] = {}  # response → (prompt key, rating, feedback id, answer)
    for first in range(0, len(prompt_keys), 500):
        chunk = prompt_keys[first:first + 500]
        rows = connection.execute(
            "SELECT f.id, f.response_id, f.rating, f.preferred, r.prompt_key, r.completion FROM feedback f "
            f"JOIN responses r ON r.id = f.response_id WHERE r.prompt_key IN ({', '.join('?' * len(chunk))}) "
            "ORDER BY f.id", chunk).fetchall()
        for fid, rid, rating, better, key, completion in rows:  # id order: the latest wins
            if better and better.strip():
                preferred[key] = better.strip()
            latest[rid] = (key, int(rating), fid, completion.strip())
    best: dict[str, tuple[int, int, str]] = {}
    for key, rating, fid, answer in latest.values():
        if rating >= good_rating and answer and (key not in best or (rating, fid) > best[key][:2]):
            best[key] = (rating, fid, answer)
    return {**{key: answer for key, (_r, _f, answer) in best.items()}, **preferred}


def question_key(question: str) -> str:
    """The no-overlap key ingest gives an eval row with this question (case and whitespace ignored)."""
    import pyarrow as pa

    from sluice.core.data.blocks import overlap_keys

    return str(overlap_keys(pa.array([question]), whitespace_collapsed=False)[0])


def live_eval_rows(request_log: Path, feedback_db: Path, *, sample_rate: float, max_rows: int, good_rating: int,
                   template: str, separator: str, published_keys: frozenset[str] = frozenset()) -> LiveEvalRows:
    """Sampled answered requests as ``eval`` rows (see the module text for what is left out and why);
    ``published_keys``: the overlap keys of main's eval rows."""
    sampled = [r for r in answered_requests(request_log) if in_sample(str(r["id"]), sample_rate)]
    references = good_references(feedback_db, [str(r["id"]) for r in sampled], good_rating)
    reader = template_reader(template)
    result = LiveEvalRows(rows=[], sampled=len(sampled))
    seen: set[str] = set()
    for record in sampled:
        read = question_and_contexts(user_words(record.get("prompt")), reader, separator)
        if read is None:
            result.no_contexts += 1
            continue
        reference = references.get(str(record["id"]))
        if reference is None:
            result.no_reference += 1
            continue
        question, contexts = read
        key = " ".join(question.lower().split())
        if key in seen:
            result.duplicates += 1
            continue
        seen.add(key)
        if question_key(question) in published_keys:
            result.already_published += 1
            continue
        result.rows.append({"question": question, "contexts": contexts, "reference": reference,
                            "source": LIVE_EVAL_SOURCE})
        if len(result.rows) >= max_rows:
            break
    return result


def write_live_eval_file(rows: list[dict[str, Any]], folder: str) -> str:
    """The rows as JSONL of the eval kind, ready to ingest."""
    path = Path(folder) / LIVE_EVAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


def live_eval_report(result: LiveEvalExport) -> str:
    return f"# Live traffic as eval data\n\n{result.message}\n"
