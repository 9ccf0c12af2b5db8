"""A worker process for large JSONL ingests.

``python -m sluice.ingest_worker JOB.json`` cleans the blocks its job lists,
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
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from sluice import cleaning
from sluice.config import CleaningConfig
from sluice.datasets import BlockSpan, InputError
from sluice.ingest import BlockOutcome, _process_span

INPUT_ERROR_EXIT = 3


def save_outcome(outcome: BlockOutcome, result: Path) -> None:
    with pa.ipc.new_file(f"{result}.frame.arrow", outcome.frame.schema) as writer:
        writer.write_table(outcome.frame)
    arrays = {"tokens": outcome.tokens, "complete": outcome.complete}
    if outcome.signatures is not None:
        arrays["signatures"] = outcome.signatures
    np.savez(f"{result}.npz", **arrays)
    summary = {"scratch": outcome.scratch, "rows": outcome.rows, "pii_counts": outcome.pii_counts,
               "rows_with_pii": outcome.rows_with_pii, "seconds": outcome.seconds}
    partial = Path(f"{result}.json.partial")
    partial.write_text(json.dumps(summary))
    os.replace(partial, f"{result}.json")  # the block is done only once this exists


def load_outcome(result: Path) -> BlockOutcome:
    summary = json.loads(Path(f"{result}.json").read_text())
    with pa.memory_map(f"{result}.frame.arrow") as source:
        frame = pa.ipc.open_file(source).read_all()
    with np.load(f"{result}.npz") as arrays:
        signatures = arrays["signatures"] if "signatures" in arrays else None
        tokens, complete = arrays["tokens"], arrays["complete"]
    return BlockOutcome(scratch=summary["scratch"], rows=summary["rows"], ids=frame["id"].combine_chunks(),
                        tokens=tokens, complete=complete, signatures=signatures, frame=frame,
                        pii_counts=summary["pii_counts"], rows_with_pii=summary["rows_with_pii"],
                        seconds=summary["seconds"])


def run(job_path: Path) -> int:
    job = json.loads(job_path.read_text())
    config = CleaningConfig.model_validate(job["config"])
    cleaning.THREADS = 1  # one process per core already: no threads on top
    for block in job["blocks"]:
        try:
            outcome = _process_span(block["path"], BlockSpan(**block["span"]), job["kind"], config,
                                    job["default_source"], tuple(job["regex_fields"]), Path(block["scratch"]))
        except InputError as error:
            problems = [dataclasses.asdict(p) for p in error.problems]
            Path(f"{job_path}.error.json").write_text(json.dumps({"problems": problems}))
            return INPUT_ERROR_EXIT
        save_outcome(outcome, Path(block["result"]))
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
