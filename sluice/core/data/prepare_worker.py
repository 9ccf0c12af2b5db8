"""A worker process for large JSONL ingests.

``python -m sluice.core.data.prepare_worker JOB.json`` cleans the blocks its job lists,
each a span of whole lines of one local JSONL file, and leaves for each block:
the cleaned rows (``scratch``, Arrow IPC), the validation frame
(``<result>.frame.arrow``), its arrays (``<result>.npz``) and, written last,
``<result>.json`` — the sign that the block is done. An unreadable line
(malformed JSON, not UTF-8) is written to ``<job>.error.json`` and the worker
exits with status 3.

Plain processes, not ``multiprocessing``: a spawned child would re-import the
caller's ``__main__`` (a CLI, a user's script), which must never run twice.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from sluice.core.config import CleaningConfig
from sluice.core.data.blocks import INPUT_ERROR_EXIT, process_span, save_outcome
from sluice.core.data.cleaning import arrays
from sluice.core.data.readers import BlockSpan, InputError


def run(job_path: Path) -> int:
    job = json.loads(job_path.read_text())
    config = CleaningConfig.model_validate(job["config"])
    arrays.THREADS = 1  # one process per core already: no threads on top
    for block in job["blocks"]:
        try:
            outcome = process_span(block["path"], BlockSpan(**block["span"]), job["kind"], config,
                                   job["default_source"], tuple(job["regex_fields"]), Path(block["scratch"]))
        except InputError as error:
            problems = [dataclasses.asdict(p) for p in error.problems]
            Path(f"{job_path}.error.json").write_text(json.dumps({"problems": problems}))
            return INPUT_ERROR_EXIT
        save_outcome(outcome, Path(block["result"]))
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
