"""Prepare an ingested batch: read → canonical rows → clean → deduplicate,
block by block, so memory stays bounded whatever the input size.

Pass 1 reads each block, normalises and redacts its text, computes ids,
token counts, MinHash signatures and the per-row facts the contract checks,
and writes the block to a scratch Parquet file. Between the passes the
duplicate and length decisions are made over the whole batch (plus what is
already published). Pass 2 streams the scratch file again and keeps the
surviving rows. The result is a cleaned Parquet file, the validation frame
(small per-row facts for Great Expectations) and a cleaning report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
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

from sluice import cleaning
from sluice.config import CleaningConfig
from sluice.datasets import BlockSpan, InputError, InputProblem, SourceFile, plan_jsonl_blocks, read_jsonl_span, read_source_file

PUBLISHED_COLUMNS = ("id", "overlap_key")
PARALLEL_MIN_BYTES = 64 << 20  # below this, starting worker processes costs more than it saves
_SEPARATOR = "\x1e"  # between fields in the canonical string an id is hashed from
_TURN = "\x1f"  # between role and content


class CleaningReport(BaseModel):
    """Rows in, rows out, and why each dropped row was dropped."""

    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = {}  # reason → rows
    pii_redacted: dict[str, int] = {}  # PII type → matches replaced
    rows_with_pii: int = 0
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
class BlockOutcome:
    """What cleaning keeps of one block: small per-row values. The cleaned rows
    themselves are in ``scratch`` (an Arrow IPC file)."""

    scratch: str
    rows: int
    ids: pa.Array
    tokens: np.ndarray
    complete: np.ndarray  # all text fields present, types right
    signatures: np.ndarray | None
    frame: pa.Table
    pii_counts: dict[str, int]
    rows_with_pii: int
    seconds: dict[str, float]


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
    scratch: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def add(self, outcome: BlockOutcome) -> None:
        self.ids.append(outcome.ids)
        self.tokens.append(outcome.tokens)
        self.complete.append(outcome.complete)
        if outcome.signatures is not None:
            self.signatures.append(outcome.signatures)
        self.frames.append(outcome.frame)
        for name, count in outcome.pii_counts.items():
            self.pii_counts[name] = self.pii_counts.get(name, 0) + count
        self.rows_with_pii += outcome.rows_with_pii
        self.scratch.append(outcome.scratch)
        self.rows.append(outcome.rows)


# ------------------------------------------------------------------ text fields per kind


def _list_parent(lists: pa.Array) -> np.ndarray:
    return pc.list_parent_indices(lists).to_numpy()


def _rebuild_list(lists: pa.ListArray, values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(lists.offsets, values, mask=lists.is_null())


def _join_lists(lists: pa.ListArray, separator: str) -> pa.Array:
    return pc.fill_null(pc.binary_join(lists, separator), "")


def _clean_texts(values: pa.Array, config: CleaningConfig, acc: _Accumulated) -> tuple[pa.Array, np.ndarray]:
    """Normalise and redact one text array; returns the text and which
    elements had PII."""
    values = cleaning.normalize_text(values, config.unicode_form, config.collapse_whitespace)
    if not config.redact_pii or len(values) == 0:
        return values, np.zeros(len(values), dtype=bool)
    redacted = cleaning.redact_pii(values, config.pii_patterns)
    for name, count in redacted.counts.items():
        acc.pii_counts[name] = acc.pii_counts.get(name, 0) + count
    return redacted.values, redacted.rows_with_pii


def _per_row_any(flags: np.ndarray, parents: np.ndarray, rows: int) -> np.ndarray:
    return np.bincount(parents, weights=flags.astype(np.float64), minlength=rows) > 0


def row_texts(table: pa.Table, kind: str) -> pa.Array:
    """Each row's text as one string (all its text fields, newline-separated):
    what its length in tokens and its near-duplicate signature are taken of."""
    if kind == "sft":
        messages = table["messages"].combine_chunks()
        return _join_lists(_rebuild_list(messages, messages.values.field("content")), "\n")
    if kind == "eval":
        return pc.binary_join_element_wise(
            pc.fill_null(table["question"].combine_chunks(), ""), _join_lists(table["contexts"].combine_chunks(), "\n"),
            pc.fill_null(table["reference"].combine_chunks(), ""), "\n")
    return pc.binary_join_element_wise(*(pc.fill_null(table[c].combine_chunks(), "") for c in
                                         ("prompt", "chosen", "rejected")), "\n")


def clean_block(table: pa.Table, kind: str, config: CleaningConfig, acc: _Accumulated) -> pa.Table:
    """The block with every text field normalised and redacted."""
    n = table.num_rows
    pii = np.zeros(n, dtype=bool)
    if kind == "sft":
        messages = table["messages"].combine_chunks()
        contents, flags = _clean_texts(messages.values.field("content"), config, acc)
        pii |= _per_row_any(flags, _list_parent(messages), n)
        inner = pa.StructArray.from_arrays([messages.values.field("role"), contents],
                                           fields=list(messages.type.value_type))
        table = table.set_column(table.schema.get_field_index("messages"), "messages",
                                 _rebuild_list(messages, inner))
    elif kind == "eval":
        for name in ("question", "reference"):
            values, flags = _clean_texts(table[name].combine_chunks(), config, acc)
            pii |= flags
            table = table.set_column(table.schema.get_field_index(name), name, values)
        contexts = table["contexts"].combine_chunks()
        passages, flags = _clean_texts(contexts.values, config, acc)
        pii |= _per_row_any(flags, _list_parent(contexts), n)
        table = table.set_column(table.schema.get_field_index("contexts"), "contexts",
                                 _rebuild_list(contexts, passages))
    else:
        for name in ("prompt", "chosen", "rejected"):
            values, flags = _clean_texts(table[name].combine_chunks(), config, acc)
            pii |= flags
            table = table.set_column(table.schema.get_field_index(name), name, values)
    acc.rows_with_pii += int(pii.sum())
    return table


def complete_rows(table: pa.Table, kind: str) -> np.ndarray:
    """Rows with every text field present and well typed. Only these are
    judged by cleaning's length and near-duplicate rules; incomplete rows go
    to the contract, which says what is missing."""
    fields = {"sft": ("messages",), "eval": ("question", "contexts", "reference"),
              "preference": ("prompt", "chosen", "rejected")}[kind]
    complete = table["schema_errors"].combine_chunks().is_null().to_numpy(zero_copy_only=False)
    for name in fields:
        complete = complete & table[name].combine_chunks().is_valid().to_numpy(zero_copy_only=False)
    return complete


def canonical_strings(table: pa.Table, kind: str) -> pa.Array:
    """The content a row's id is the hash of: every field, in a fixed layout."""
    if kind == "sft":
        messages = table["messages"].combine_chunks()
        turns = pc.binary_join_element_wise(pc.fill_null(messages.values.field("role"), ""),
                                            pc.fill_null(messages.values.field("content"), ""), _TURN)
        body = _join_lists(_rebuild_list(messages, turns), _SEPARATOR)
        return pc.binary_join_element_wise("sft", body, _SEPARATOR)
    if kind == "eval":
        contexts = _join_lists(table["contexts"].combine_chunks(), "\x1d")
        return pc.binary_join_element_wise("eval", pc.fill_null(table["question"], ""), contexts,
                                           pc.fill_null(table["reference"], ""), _SEPARATOR)
    return pc.binary_join_element_wise("preference", *(pc.fill_null(table[c], "") for c in
                                                       ("prompt", "chosen", "rejected")), _SEPARATOR)


def identity_strings(table: pa.Table, kind: str, complete: np.ndarray) -> pa.Array:
    """What a row's id hashes: its content; for an incomplete row (nothing or
    too little to identify it by) also where it came from, so each one keeps
    an id of its own in reports and quarantine."""
    content = canonical_strings(table, kind)
    if complete.all():
        return content
    where = pc.binary_join_element_wise(table["source_file"].combine_chunks(),
                                        pc.cast(table["source_line"].combine_chunks(), pa.string()), ":")
    return pc.if_else(pa.array(complete), content, pc.binary_join_element_wise(content, where, _SEPARATOR))


def prompt_texts(table: pa.Table, kind: str) -> pa.Array:
    """What a row asks: the first user turn (sft), the question (eval), the
    prompt (preference). Compared across kinds for the no-overlap rule."""
    if kind == "eval":
        return pc.fill_null(table["question"].combine_chunks(), "")
    if kind == "preference":
        return pc.fill_null(table["prompt"].combine_chunks(), "")
    messages = table["messages"].combine_chunks()
    n = len(messages)
    values = messages.values
    is_user = pc.equal(values.field("role"), "user").fill_null(False).to_numpy(zero_copy_only=False)
    parents = _list_parent(messages)
    positions = np.arange(len(values))
    first = np.full(n, len(values), dtype=np.int64)
    np.minimum.at(first, parents[is_user], positions[is_user])
    found = first < len(values)
    contents = pc.fill_null(values.field("content"), "")
    taken = contents.take(pa.array(np.where(found, first, 0))) if len(values) else pa.nulls(n, pa.string())
    return pc.if_else(pa.array(found), taken, "")


def overlap_keys(texts: pa.Array, whitespace_collapsed: bool) -> pa.Array:
    """Case- and whitespace-insensitive hash of a prompt text. Cleaned text
    has single spaces already: only line breaks are left to flatten."""
    lowered = pc.utf8_lower(texts)
    if whitespace_collapsed:
        squeezed = pc.replace_substring(lowered, "\n", " ")
    else:
        squeezed = pc.utf8_trim_whitespace(pc.replace_substring_regex(lowered, r"\s+", " "))
    return cleaning.stable_ids(squeezed)


# ------------------------------------------------------------------ validation frame


def _chars(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.utf8_length(values), 0).cast(pa.int64())


def validation_block(table: pa.Table, kind: str, ids: pa.Array, tokens: np.ndarray, pii_remaining: np.ndarray,
                     text_fields: Iterable[str]) -> pa.Table:
    """The per-row facts a contract checks, as small columns."""
    frame: dict[str, pa.Array | np.ndarray] = {
        "id": ids,
        "overlap_key": table["overlap_key"].combine_chunks(),
        "source": table["source"].combine_chunks(),
        "source_file": table["source_file"].combine_chunks(),
        "source_line": table["source_line"].combine_chunks(),
        "types_ok": table["schema_errors"].combine_chunks().is_null(),
        "schema_errors": table["schema_errors"].combine_chunks(),
        # int64: GX 1.24 checks ranges vectorized only on int64 columns (int32 goes row by row)
        "n_tokens": pa.array(tokens, pa.int64()),
        "pii_remaining": pa.array(pii_remaining, pa.int64()),
    }
    for column in table.column_names:
        if column not in ("schema_errors", "id", "overlap_key"):
            frame[f"has_{column}"] = table[column].combine_chunks().is_valid()
    if kind == "sft":
        messages = table["messages"].combine_chunks()
        roles = pc.binary_join(_rebuild_list(messages, messages.values.field("role")), ",")
        # "system,user,assistant," — each role ends with a comma, as the role-order regex expects
        frame["role_sequence"] = pc.fill_null(pc.binary_join_element_wise(roles, "", ","), "")
        lengths = _chars(messages.values.field("content")).to_numpy(zero_copy_only=False)
        offsets = messages.offsets.to_numpy()
        counts = np.diff(offsets)
        minimum = np.zeros(len(messages), dtype=np.int64)
        if len(lengths):
            reduced = np.minimum.reduceat(lengths, np.minimum(offsets[:-1], len(lengths) - 1))
            minimum = np.where(counts > 0, reduced, 0)
        frame["min_turn_chars"] = minimum
    elif kind == "eval":
        frame["n_contexts"] = pc.fill_null(pc.list_value_length(table["contexts"].combine_chunks()), 0).cast(pa.int64())
        frame["question_chars"] = _chars(table["question"].combine_chunks())
        frame["reference_chars"] = _chars(table["reference"].combine_chunks())
    else:
        for name in ("prompt", "chosen", "rejected"):
            frame[f"{name}_chars"] = _chars(table[name].combine_chunks())
        frame["chosen_differs"] = pc.not_equal(table["chosen"], table["rejected"]).combine_chunks().fill_null(True)
    for name in text_fields:
        frame[f"text_{name}"] = pc.fill_null(table[name].combine_chunks(), "")
    return pa.table(frame)


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


def _time(seconds: dict[str, float], stage: str, started: float) -> float:
    now = time.perf_counter()
    seconds[stage] = seconds.get(stage, 0.0) + now - started
    return now


def process_block(table: pa.Table, kind: str, config: CleaningConfig, regex_fields: tuple[str, ...],
                  scratch: Path) -> BlockOutcome:
    """Clean one block, write its rows to ``scratch``, and keep what the
    batch-wide decisions and the contract need."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    acc = _Accumulated()
    table = clean_block(table, kind, config, acc)
    row_text = row_texts(table, kind)
    complete = complete_rows(table, kind)
    ids = cleaning.stable_ids(identity_strings(table, kind, complete))
    table = table.append_column("id", ids).append_column(
        "overlap_key", overlap_keys(prompt_texts(table, kind), config.collapse_whitespace))
    tokens = cleaning.count_tokens(row_text, config.tokenizer)
    remaining = cleaning.count_pii(row_text, config.pii_patterns)
    started = _time(seconds, "clean", started)
    signatures = None
    if config.near_duplicate_threshold is not None:
        signatures = cleaning.minhash_signatures(row_text, num_perm=config.minhash_permutations,
                                                 shingle_words=config.shingle_words)
    started = _time(seconds, "minhash", started)
    frame = validation_block(table, kind, ids, tokens, remaining, regex_fields)
    with pa.ipc.new_file(scratch, table.schema) as writer:
        writer.write_table(table)
    _time(seconds, "write", started)
    return BlockOutcome(scratch=str(scratch), rows=table.num_rows, ids=ids, tokens=tokens, complete=complete,
                        signatures=signatures, frame=frame, pii_counts=acc.pii_counts,
                        rows_with_pii=acc.rows_with_pii, seconds=seconds)


def _process_span(path: str, span: BlockSpan, kind: str, config: CleaningConfig, default_source: str,
                  regex_fields: tuple[str, ...], scratch: Path) -> BlockOutcome:
    """A worker's job (``sluice.ingest_worker``): read its span of a JSONL file and clean it."""
    started = time.perf_counter()
    table = read_jsonl_span(path, span, kind, default_source)
    read = time.perf_counter() - started
    outcome = process_block(table, kind, config, regex_fields, scratch)
    outcome.seconds["read"] = outcome.seconds.get("read", 0.0) + read
    return outcome


def worker_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _blocks_in_workers(files: list[SourceFile], kind: str, config: CleaningConfig, default_source: str,
                       regex_fields: tuple[str, ...], scratch_dir: Path, workers: int) -> Iterator[BlockOutcome]:
    """Local JSONL files, cleaned by one worker process per core
    (``sluice.ingest_worker``), outcomes in block order."""
    from sluice.ingest_worker import INPUT_ERROR_EXIT, load_outcome

    blocks = [{"path": f.location, "span": dataclasses.asdict(span),
               "scratch": str(scratch_dir / f"block-{index:05d}.arrow"),
               "result": str(scratch_dir / f"block-{index:05d}")}
              for index, (f, span) in enumerate((f, span) for f in files for span in plan_jsonl_blocks(Path(f.location)))]
    jobs, processes = [], []
    for worker in range(min(workers, len(blocks))):
        job = scratch_dir / f"worker-{worker}.json"
        job.write_text(json.dumps({"kind": kind, "config": config.model_dump(mode="json"),
                                   "default_source": default_source, "regex_fields": list(regex_fields),
                                   "blocks": blocks[worker::workers]}))
        log = (scratch_dir / f"worker-{worker}.log").open("wb")
        processes.append(subprocess.Popen([sys.executable, "-m", "sluice.ingest_worker", str(job)],
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
    started = _time(seconds, "deduplicate", started)

    kept = _write_kept(acc.scratch, clean_path, keep)
    frame = pa.concat_tables(acc.frames).filter(pa.array(keep))
    with pa.ipc.new_file(frame_path, frame.schema) as frame_writer:
        frame_writer.write_table(frame)
    shutil.rmtree(scratch_dir)
    _time(seconds, "write", started)

    duplicates = sum(dropped.get(r, 0) for r in ("exact_duplicate", "near_duplicate", "already_published"))
    report = CleaningReport(
        rows_in=rows_in, rows_out=kept, dropped={k: v for k, v in dropped.items() if v},
        pii_redacted={k: v for k, v in sorted(acc.pii_counts.items()) if v}, rows_with_pii=acc.rows_with_pii,
        duplicate_rate=duplicates / rows_in if rows_in else 0.0,
        seconds={k: round(v, 3) for k, v in seconds.items()}, workers=workers if parallel else 1,
    )
    return PreparedBatch(kind=kind, clean_path=str(clean_path), frame_path=str(frame_path),
                         files=[f.location for f in files], report=report)


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
        representative = cleaning.near_duplicates(np.concatenate(acc.signatures), threshold, keep=keep & complete)
        candidates = np.nonzero(representative >= 0)[0]
        if texts_at is not None and len(candidates):
            texts = texts_at(np.concatenate([candidates, representative[candidates]]))
            pairs = zip(texts[: len(candidates)], texts[len(candidates):], strict=True)
            confirmed = np.array([jaccard(a, b, config.shingle_words) >= threshold for a, b in pairs])
            candidates = candidates[confirmed]
        near = np.zeros(len(id_array), dtype=bool)
        near[candidates] = True
        drop(near, "near_duplicate")
    return keep, dropped


def shingles(text: str, size: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + size]) for i in range(max(1, len(words) - size + 1))} if words else set()


def jaccard(a: str, b: str, size: int) -> float:
    first, second = shingles(a, size), shingles(b, size)
    union = first | second
    return len(first & second) / len(union) if union else 0.0


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
                low_cardinality = [c for c in ("source", "source_file", "messages.list.element.role")
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
