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

from prefect import flow, get_run_logger

from flows.ingest import ingest
from sluice.core.config import SluiceConfig
from sluice.core.data.feedback import FeedbackExport
from tasks.feedback import collect_preference_pairs, mark_feedback_exported, write_preference_file
from tasks.ingest import load_kind_contract
from tasks.lakefs import resolve_commit
from tasks.reports import report_feedback_export


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
        result = publish_pairs(pairs, database, config)
    get_run_logger().info(result.message)
    report_feedback_export(result)
    return result


def publish_pairs(pairs: list[dict], database: str, config: SluiceConfig) -> FeedbackExport:
    """Ingest the pairs; mark their feedback exported with main's commit once they are there."""
    source = write_preference_file(pairs, str(config.data.work_dir / "feedback"))
    ingested = ingest(source=source, kind="preference", source_name="serving-feedback", config=config)
    commit = ingested.main_commit.commit_id if ingested.main_commit else None
    if ingested.decision == "nothing_new":  # every pair is on main already (an export whose marking failed)
        commit = resolve_commit(config.lakefs.repository, config.lakefs.default_branch).commit_id
    ids = sorted({i for pair in pairs for i in pair["feedback_ids"]})
    exported = mark_feedback_exported(database, ids, commit) if commit else 0
    return FeedbackExport(pairs=len(pairs), exported=exported, ingest=ingested, message=(
        f"{len(pairs)} preference pair(s) from {len(ids)} feedback item(s): {ingested.decision}"
        + (f", in lakefs://{config.lakefs.repository}/{commit}" if commit else "")))
