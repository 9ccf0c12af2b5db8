"""Serving feedback on its way into the data: preference pairs written as a
file that ingests like any other preference source, and the export's
result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sluice.core.data.batch import IngestResult
from sluice.core.errors import ExplainedError

FEEDBACK_FILE = "serving-feedback.jsonl"
FEEDBACK_DB = "feedback.db"  # the serving endpoint's store, in its serving.state_dir


class FeedbackStoreMissing(ExplainedError, FileNotFoundError):
    """No feedback store where the export looked; the message says where it looked and how to point it elsewhere."""


class FeedbackExport(BaseModel):
    pairs: int
    exported: int  # feedback items marked with the commit
    ingest: IngestResult | None = None
    message: str


def write_preference_file(pairs: list[dict[str, Any]], folder: str) -> str:
    """The pairs as JSONL rows of the preference kind (the feedback ids stay behind)."""
    path = Path(folder) / FEEDBACK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for pair in pairs:
            out.write(json.dumps({k: v for k, v in pair.items() if k != "feedback_ids"}, ensure_ascii=False) + "\n")
    return str(path)


def feedback_report(result: FeedbackExport) -> str:
    return f"# Feedback export\n\n{result.message}\n"
