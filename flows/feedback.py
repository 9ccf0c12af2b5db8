"""Closing the loop: feedback collected by ``sluice serve`` becomes
preference data on ``main``, which the DPO path trains on.

1. Read the unexported feedback from the serving endpoint's store
   (``<serving.state_dir>/feedback.db``) as preference pairs: a client's
   preferred answer over the served one; a better-rated answer over a
   worse-rated one to the same prompt.
2. Ingest them as ``preference`` data through write–audit–publish (the same
   contract, PII redaction and dedup as any other source).
3. Once published, mark the feedback as exported with the commit id, so it is
   never exported twice. Fewer pairs than the contract's minimum wait for the
   next run, untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from flows.ingest import IngestResult, ingest
from sluice.config import SluiceConfig
from tasks.ingest import load_kind_contract
from tasks.lakefs import resolve_commit


class FeedbackExport(BaseModel):
    pairs: int
    exported: int  # feedback items marked with the commit
    ingest: IngestResult | None = None
    message: str


@task(name="collect-preference-pairs", cache_policy=NO_CACHE)
def collect_preference_pairs(feedback_db: str) -> list[dict]:
    from sluice.serving.feedback import preference_pairs

    if not Path(feedback_db).exists():
        raise FileNotFoundError(f"no feedback store at {feedback_db}: is serving.state_dir the serving endpoint's?")
    return preference_pairs(feedback_db)


@task(name="write-preference-file", cache_policy=NO_CACHE)
def write_preference_file(pairs: list[dict], folder: str) -> str:
    path = Path(folder) / "serving-feedback.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for pair in pairs:
            out.write(json.dumps({k: v for k, v in pair.items() if k != "feedback_ids"}, ensure_ascii=False) + "\n")
    return str(path)


@task(name="mark-feedback-exported", cache_policy=NO_CACHE)
def mark_feedback_exported(feedback_db: str, feedback_ids: list[int], commit_id: str) -> int:
    from sluice.serving.feedback import mark_exported

    return mark_exported(feedback_db, feedback_ids, commit_id)


@flow(name="export-feedback", log_prints=True)
def export_feedback(feedback_db: str | None = None,
                    config: SluiceConfig = SluiceConfig()) -> FeedbackExport:  # noqa: B008 (a form default)
    """Commit the serving endpoint's unexported feedback to lakeFS as preference data."""
    database = feedback_db or str(config.serving.state_dir / "feedback.db")
    pairs = collect_preference_pairs(database)
    rows = load_kind_contract("preference", config.contracts).dataset.rows
    needed = rows.min if rows and rows.min else 1
    if len(pairs) < needed:
        result = FeedbackExport(pairs=len(pairs), exported=0, message=(
            f"{len(pairs)} preference pair(s) from feedback; the preference contract needs at least {needed}: "
            "waiting for more"))
    else:
        source = write_preference_file(pairs, str(config.data.work_dir / "feedback"))
        ingested = ingest(source=source, kind="preference", source_name="serving-feedback", config=config)
        commit = ingested.main_commit.commit_id if ingested.main_commit else None
        if ingested.decision == "nothing_new":  # every pair is on main already (an export whose marking failed)
            commit = resolve_commit(config.lakefs.repository, config.lakefs.default_branch).commit_id
        ids = sorted({i for pair in pairs for i in pair["feedback_ids"]})
        exported = mark_feedback_exported(database, ids, commit) if commit else 0
        result = FeedbackExport(pairs=len(pairs), exported=exported, ingest=ingested, message=(
            f"{len(pairs)} preference pair(s) from {len(ids)} feedback item(s): {ingested.decision}"
            + (f", in lakefs://{config.lakefs.repository}/{commit}" if commit else "")))
    get_run_logger().info(result.message)
    create_markdown_artifact(markdown=f"# Feedback export\n\n{result.message}\n", key="feedback-export")
    return result
