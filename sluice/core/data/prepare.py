"""Prepare an ingested batch: read → canonical rows → clean → deduplicate,
block by block, so memory stays bounded whatever the input size.

Pass 1 reads each block, normalises and redacts its text, computes ids,
token counts, MinHash signatures and the per-row facts the contract checks,
and writes the block to a scratch Arrow file (:mod:`sluice.core.data.blocks`),
here or, for large local JSONL inputs, in worker processes started as
``python -m sluice.core.data.prepare_worker``. Between the passes the
duplicate and length decisions are made over the whole batch (plus what is
already published). Pass 2 streams the scratch files again and keeps the
surviving rows. The result is a cleaned Parquet file, the validation frame
(small per-row facts for Great Expectations) and a cleaning report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from sluice.core.config import CleaningConfig
from sluice.core.data.blocks import (
    INPUT_ERROR_EXIT,
    BlockOutcome,
    load_outcome,
    process_block,
    row_texts,
    time_stage,
)
from sluice.core.data.cleaning.dedup import confirm_near_duplicates, near_duplicates
from sluice.core.data.cleaning.pii_digests import PiiDigests, batch_salt, digest_originals
from sluice.core.data.kinds import add_counts
from sluice.core.data.readers import InputError, InputProblem, SourceFile, plan_jsonl_blocks, read_source_file

PARALLEL_MIN_BYTES = 64 << 20  # below this, starting worker processes costs more than it saves


class CleaningReport(BaseModel):
    """Rows in, rows out, and why each dropped row was dropped."""

    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = {}  # reason → rows
    pii_redacted: dict[str, int] = {}  # PII type → matches replaced
    rows_with_pii: int = 0
    # keyed digests of the redacted originals, for the privacy probes in the gate (none kept in clear)
    pii_digests: PiiDigests | None = None
    # input fields no shape of the kind reads (top-level "name", per turn "messages[].name") → rows that gave
    # them: not in the canonical rows, still in the raw input kept with the batch
    unmapped_fields: dict[str, int] = {}
    duplicate_rate: float = 0.0  # exact + near duplicates (incl. already published) / rows in
    seconds: dict[str, float] = {}  # stage → seconds (summed over workers when there are several)
    workers: int = 1  # processes that cleaned the blocks


class PreparedBatch(BaseModel):
    """A cleaned batch on local disk, ready for its contract."""

    kind: str
    clean_path: str  # Parquet: canonical columns + id + overlap_key
    frame_path: str  # Arrow IPC file: the validation frame (one row per clean row)
    files: list[str]
    report: CleaningReport


@dataclass
class _Accumulated:
    """What pass 1 keeps of every row (small, fixed-size values only)."""

    ids: list[pa.Array] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    complete: list[np.ndarray] = field(default_factory=list)  # all text fields present, types right
    signatures: list[np.ndarray] = field(default_factory=list)
    frames: list[pa.Table] = field(default_factory=list)
    pii_counts: dict[str, int] = field(default_factory=dict)
    rows_with_pii: int = 0
    pii_originals: set[tuple[str, str]] = field(default_factory=set)
    unmapped_fields: dict[str, int] = field(default_factory=dict)
    scratch: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def add(self, outcome: BlockOutcome) -> None:
        self.ids.append(outcome.ids)
        self.tokens.append(outcome.tokens)
        self.complete.append(outcome.complete)
        if outcome.signatures is not None:
            self.signatures.append(outcome.signatures)
        self.frames.append(outcome.frame)
        add_counts(self.pii_counts, outcome.pii_counts)
        add_counts(self.unmapped_fields, outcome.unmapped_fields)
        self.rows_with_pii += outcome.rows_with_pii
        self.pii_originals.update(outcome.pii_originals)
        self.scratch.append(outcome.scratch)
        self.rows.append(outcome.rows)


# ------------------------------------------------------------------ the two passes


def prefetched(blocks: Iterator[pa.Table], depth: int = 1) -> Iterator[pa.Table]:
    """Read the next block in a background thread while this one is cleaned
    (parsing and the cleaning kernels release the GIL: two cores work)."""
    done = object()
    queue: Queue[object] = Queue(maxsize=depth)

    def produce() -> None:
        try:
            for block in blocks:
                queue.put(block)
            queue.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            queue.put(exc)

    thread = threading.Thread(target=produce, name="ingest-reader", daemon=True)
    thread.start()
    while (item := queue.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item  # type: ignore[misc]
    thread.join()


def read_frame(path: str | Path):  # type: ignore[no-untyped-def]
    """The validation frame a prepared batch wrote, as a pandas DataFrame."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_pandas()


def worker_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _blocks_in_workers(files: list[SourceFile], kind: str, config: CleaningConfig, default_source: str,
                       regex_fields: tuple[str, ...], scratch_dir: Path, workers: int) -> Iterator[BlockOutcome]:
    """Local JSONL files, cleaned by one worker process per core
    (``sluice.core.data.prepare_worker``), outcomes in block order."""
    spans = ((f, span) for f in files for span in plan_jsonl_blocks(Path(f.location)))
    blocks = [{"path": f.location, "span": dataclasses.asdict(span),
               "scratch": str(scratch_dir / f"block-{index:05d}.arrow"),
               "result": str(scratch_dir / f"block-{index:05d}")}
              for index, (f, span) in enumerate(spans)]
    jobs, processes = [], []
    for worker in range(min(workers, len(blocks))):
        job = scratch_dir / f"worker-{worker}.json"
        job.write_text(json.dumps({"kind": kind, "config": config.model_dump(mode="json"),
                                   "default_source": default_source, "regex_fields": list(regex_fields),
                                   "blocks": blocks[worker::workers]}))
        log = (scratch_dir / f"worker-{worker}.log").open("wb")
        processes.append(subprocess.Popen([sys.executable, "-m", "sluice.core.data.prepare_worker", str(job)],
                                          stdout=log, stderr=subprocess.STDOUT))
        log.close()
        jobs.append(job)
    try:
        for index, block in enumerate(blocks):
            worker = index % len(processes)
            done = Path(f"{block['result']}.json")
            while not done.exists():
                status = processes[worker].poll()
                if status is not None and not done.exists():
                    error = Path(f"{jobs[worker]}.error.json")
                    if status == INPUT_ERROR_EXIT and error.exists():
                        raise InputError([InputProblem(**p) for p in json.loads(error.read_text())["problems"]])
                    log_tail = (scratch_dir / f"worker-{worker}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"ingest worker {worker} exited with status {status}:\n{log_tail}")
                time.sleep(0.01)
            yield load_outcome(Path(block["result"]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def _blocks_here(files: list[SourceFile], kind: str, config: CleaningConfig, default_source: str,
                 chunk_rows: int, regex_fields: tuple[str, ...], scratch_dir: Path) -> Iterator[BlockOutcome]:
    """Any source, cleaned in this process while a thread reads the next block."""
    blocks = prefetched(block for source in files
                        for block in read_source_file(source, kind, default_source, chunk_rows))
    started = time.perf_counter()
    for index, table in enumerate(blocks):
        waited = time.perf_counter() - started  # reading ran ahead; only the wait counts
        outcome = process_block(table, kind, config, regex_fields, scratch_dir / f"block-{index:05d}.arrow")
        outcome.seconds["read"] = outcome.seconds.get("read", 0.0) + waited
        yield outcome
        started = time.perf_counter()


def prepare_batch(
    files: list[SourceFile],
    kind: str,
    config: CleaningConfig,
    work_dir: Path,
    *,
    default_source: str,
    chunk_rows: int,
    published_ids: set[str] | None = None,
    regex_fields: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> PreparedBatch:
    """Read, clean and deduplicate ``files`` into ``work_dir``.

    Large local JSONL inputs (``PARALLEL_MIN_BYTES`` or more) are cleaned by
    worker processes, one per core (``workers``); everything else in this
    process. Raises :class:`InputError` when the input cannot be read
    (malformed JSON, not UTF-8, an empty input), naming the file and line.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    # Scratch blocks and the frame are Arrow IPC (written at memory speed, read
    # memory-mapped); only the cleaned rows are encoded as Parquet, once.
    scratch_dir, clean_path, frame_path = work_dir / "scratch", work_dir / "clean.parquet", work_dir / "frame.arrow"
    scratch_dir.mkdir(exist_ok=True)
    regex_fields = tuple(regex_fields)
    workers = worker_count() if workers is None else workers
    parallel = workers > 1 and all(f.format == "jsonl" and "://" not in f.location for f in files) and \
        sum(f.size_bytes or 0 for f in files) >= PARALLEL_MIN_BYTES
    outcomes = (_blocks_in_workers(files, kind, config, default_source, regex_fields, scratch_dir, workers)
                if parallel else
                _blocks_here(files, kind, config, default_source, chunk_rows, regex_fields, scratch_dir))
    acc, seconds = _Accumulated(), {}
    started = time.perf_counter()
    for outcome in outcomes:
        acc.add(outcome)
        for stage, spent in outcome.seconds.items():
            seconds[stage] = seconds.get(stage, 0.0) + spent
        if progress:
            progress(outcome.rows)
    if parallel:  # stage seconds are summed over workers: say how long it took
        seconds["blocks_wall"] = time.perf_counter() - started
    rows_in = sum(acc.rows)
    if rows_in == 0:
        names = ", ".join(f.location for f in files)
        raise InputError([InputProblem(names, None, "empty input: no rows to ingest")])

    started = time.perf_counter()
    keep, dropped = decide_drops(acc, config, published_ids or set(),
                                 texts_at=lambda positions: _texts_at(acc.scratch, kind, positions))
    started = time_stage(seconds, "deduplicate", started)

    kept = _write_kept(acc.scratch, clean_path, keep)
    frame = pa.concat_tables(acc.frames).filter(pa.array(keep))
    with pa.ipc.new_file(frame_path, frame.schema) as frame_writer:
        frame_writer.write_table(frame)
    shutil.rmtree(scratch_dir)
    time_stage(seconds, "write", started)

    duplicates = sum(dropped.get(r, 0) for r in ("exact_duplicate", "near_duplicate", "already_published"))
    report = CleaningReport(
        rows_in=rows_in, rows_out=kept, dropped={k: v for k, v in dropped.items() if v},
        pii_redacted={k: v for k, v in sorted(acc.pii_counts.items()) if v}, rows_with_pii=acc.rows_with_pii,
        pii_digests=_pii_digests(acc, config),
        unmapped_fields=dict(sorted(acc.unmapped_fields.items())),
        duplicate_rate=duplicates / rows_in if rows_in else 0.0,
        seconds={k: round(v, 3) for k, v in seconds.items()}, workers=workers if parallel else 1,
    )
    return PreparedBatch(kind=kind, clean_path=str(clean_path), frame_path=str(frame_path),
                         files=[f.location for f in files], report=report)


def _pii_digests(acc: _Accumulated, config: CleaningConfig) -> PiiDigests | None:
    """Digests of every original redacted in the batch (kept rows or not: a model never sees the dropped
    ones, but a leak check with more digests misses nothing), salted by the ids of the batch's complete rows
    (an incomplete row's id depends on how it was read)."""
    if not config.redact_pii:
        return None
    complete = pa.array(np.concatenate(acc.complete) if acc.complete else np.zeros(0, bool))
    ids = pa.chunked_array(acc.ids, pa.string()).filter(complete).drop_null().to_pylist()
    return digest_originals(acc.pii_originals, config.pii_patterns, salt=batch_salt(ids))


def decide_drops(
    acc: _Accumulated, config: CleaningConfig, published_ids: set[str],
    texts_at: Callable[[np.ndarray], list[str]] | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Which rows survive cleaning, and how many were dropped for each reason.
    Exact duplicates keep their first occurrence; near duplicates point at an
    earlier kept row, and (with ``texts_at``) are confirmed on the exact
    Jaccard similarity of their texts, since MinHash only estimates it."""
    id_array = pa.chunked_array(acc.ids, pa.string())
    tokens = np.concatenate(acc.tokens) if acc.tokens else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(id_array), dtype=bool)
    dropped: dict[str, int] = {}

    def drop(mask: np.ndarray, reason: str) -> None:
        newly = mask & keep
        dropped[reason] = dropped.get(reason, 0) + int(newly.sum())
        keep[newly] = False

    complete = np.concatenate(acc.complete) if acc.complete else np.zeros(len(id_array), dtype=bool)
    if config.drop_exact_duplicates:
        if published_ids:
            published = pa.array(sorted(published_ids), pa.string())
            drop(pc.is_in(id_array, value_set=published).to_numpy(zero_copy_only=False), "already_published")
        # hash-encode the ids, then find each code's first row (sorting ints, not strings)
        codes = pc.dictionary_encode(id_array).combine_chunks().indices.to_numpy(zero_copy_only=False)
        _, first = np.unique(codes, return_index=True)
        repeated = np.ones(len(id_array), dtype=bool)
        repeated[first] = False
        drop(repeated, "exact_duplicate")
    drop(complete & (tokens < config.min_tokens), "too_short")
    drop(complete & (tokens > config.max_tokens), "too_long")
    threshold = config.near_duplicate_threshold
    if threshold is not None and acc.signatures:
        representative = near_duplicates(np.concatenate(acc.signatures), threshold, keep=keep & complete)
        near = representative >= 0
        if texts_at is not None:
            near = confirm_near_duplicates(representative, texts_at, threshold, config.shingle_words)
        drop(near, "near_duplicate")
    return keep, dropped




def _scratch_table(scratch: list[str]) -> pa.Table:
    """All scratch blocks as one table, memory-mapped (no copy)."""
    return pa.concat_tables(pa.ipc.open_file(pa.memory_map(path)).read_all() for path in scratch)


def _texts_at(scratch: list[str], kind: str, positions: np.ndarray) -> list[str]:
    """Row texts at these positions of the scratch blocks."""
    table = _scratch_table(scratch).take(pa.array(positions))
    return [text or "" for text in row_texts(table, kind).to_pylist()]


def _write_kept(scratch: list[str], target: Path, keep: np.ndarray) -> int:
    """Stream the scratch blocks into ``target`` Parquet, keeping the rows marked."""
    kept = offset = 0
    writer: pq.ParquetWriter | None = None
    for path in scratch:
        with pa.memory_map(path) as source:
            reader = pa.ipc.open_file(source)
            if writer is None:
                # dictionary encoding only where values repeat; on ids and text it is wasted work
                low_cardinality = [c for c in ("source", "source_file", "messages.list.element.role",
                                               "prompt.list.element.role")
                                   if c.split(".")[0] in reader.schema.names]
                writer = pq.ParquetWriter(target, reader.schema, use_dictionary=low_cardinality)
            for index in range(reader.num_record_batches):
                batch = reader.get_batch(index)
                selected = batch.filter(pa.array(keep[offset:offset + batch.num_rows]))
                offset += batch.num_rows
                writer.write_batch(selected)
                kept += selected.num_rows
    if writer is not None:
        writer.close()
    return kept
