"""Feedback tasks: the serving endpoint's unexported feedback as preference
pairs, written as a preference file, and marked exported once published."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from sluice.core.data import feedback
from sluice.serving import feedback as serving_feedback
from tasks import UNCACHED


@task(name="collect-preference-pairs", **UNCACHED)
def collect_preference_pairs(feedback_db: str) -> list[dict]:
    if not Path(feedback_db).exists():
        raise feedback.FeedbackStoreMissing(
            f"no feedback store at {feedback_db}: the serving endpoint keeps {feedback.FEEDBACK_DB} in its "
            "serving.state_dir; set serving.state_dir (or feedback_db) to the endpoint's")
    return serving_feedback.preference_pairs(feedback_db)


write_preference_file = task(feedback.write_preference_file, name="write-preference-file", **UNCACHED)
mark_feedback_exported = task(serving_feedback.mark_exported, name="mark-feedback-exported", **UNCACHED)
