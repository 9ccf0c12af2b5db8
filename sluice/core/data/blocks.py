"""One block of an ingest: cleaned, identified and measured (pass 1 of
:mod:`sluice.core.data.prepare`), and its outcome handed between processes.

:func:`process_block` normalises and redacts every text field of a block of
canonical rows, computes ids, token counts, MinHash signatures and the
per-row facts the contract checks (the validation frame), and writes the
cleaned rows to a scratch Arrow IPC file. It runs in the preparing process,
or in a worker process (:mod:`sluice.core.data.prepare_worker`) that reads its
own span of a JSONL file (:func:`process_span`) and hands its
:class:`BlockOutcome` back through files (:func:`save_outcome`,
:func:`load_outcome`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.core.config import CleaningConfig
from sluice.core.data.cleaning.dedup import stable_ids
from sluice.core.data.cleaning.minhash import minhash_signatures
from sluice.core.data.cleaning.pii import count_pii, redact_pii
from sluice.core.data.cleaning.text import normalize_text
from sluice.core.data.cleaning.tokens import count_tokens
from sluice.core.data.kinds import PROVENANCE, block_facts
from sluice.core.data.list_arrays import join_lists, rebuild_list, rows_with_any, user_turn
from sluice.core.data.readers import BlockSpan, read_jsonl_span
from sluice.core.private_files import write_private

_SEPARATOR = "\x1e"  # between fields in the canonical string an id is hashed from
_TURN = "\x1f"  # between role and content
_PROMPT_TURNS = "\x1d"  # between the turns of a preference prompt
INPUT_ERROR_EXIT = 3  # a worker's exit status when its input cannot be read (problems in <job>.error.json)


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
    unmapped_fields: dict[str, int]  # input field no shape reads → rows that give it
    seconds: dict[str, float]
    # (PII type, original) of every redacted match: digested by the batch (pii_digests), never kept in clear
    # (between a worker and its parent only in an owner-only file, deleted once read: load_outcome)
    pii_originals: list[tuple[str, str]] = dataclasses.field(default_factory=list)


# ------------------------------------------------------------------ text fields per kind


def _clean_texts(values: pa.Array, config: CleaningConfig, pii_counts: dict[str, int],
                 originals: list[tuple[str, str]]) -> tuple[pa.Array, np.ndarray]:
    """Normalise and redact one text array, adding the PII redacted to
    ``pii_counts`` and its originals to ``originals``; returns the text and
    which elements had PII."""
    values = normalize_text(values, config.unicode_form, config.collapse_whitespace)
    if not config.redact_pii or len(values) == 0:
        return values, np.zeros(len(values), dtype=bool)
    redacted = redact_pii(values, config.pii_patterns, keep_originals=True)
    for name, count in redacted.counts.items():
        pii_counts[name] = pii_counts.get(name, 0) + count
    originals += redacted.originals
    return redacted.values, redacted.rows_with_pii


def _turn_texts(chats: pa.Array, separator: str) -> pa.Array:
    """Each chat's turn contents joined ("" for a null chat)."""
    return join_lists(rebuild_list(chats, chats.values.field("content")), separator)


def field_text(table: pa.Table, name: str) -> pa.Array:
    """A text field as one string per row ("" where null); a chat field (the
    preference prompt) as its turns' contents, newline-separated."""
    values = table[name].combine_chunks()
    if pa.types.is_list(values.type):
        return _turn_texts(values, "\n")
    return pc.fill_null(values, "")


def row_texts(table: pa.Table, kind: str) -> pa.Array:
    """Each row's text as one string (all its text fields, newline-separated):
    what its length in tokens and its near-duplicate signature are taken of."""
    if kind == "sft":
        return _turn_texts(table["messages"].combine_chunks(), "\n")
    if kind == "eval":
        return pc.binary_join_element_wise(
            field_text(table, "question"), join_lists(table["contexts"].combine_chunks(), "\n"),
            field_text(table, "reference"), "\n")
    return pc.binary_join_element_wise(*(field_text(table, c) for c in ("prompt", "chosen", "rejected")), "\n")


def _clean_turns(chats: pa.Array, config: CleaningConfig, pii_counts: dict[str, int],
                 originals: list[tuple[str, str]]) -> tuple[pa.Array, np.ndarray]:
    """A chat column with every turn's content normalised and redacted, and
    which rows had PII."""
    contents, flags = _clean_texts(chats.values.field("content"), config, pii_counts, originals)
    inner = pa.StructArray.from_arrays([chats.values.field("role"), contents], fields=list(chats.type.value_type))
    return rebuild_list(chats, inner), rows_with_any(flags, chats)


def clean_block(table: pa.Table, kind: str, config: CleaningConfig
                ) -> tuple[pa.Table, dict[str, int], int, list[tuple[str, str]]]:
    """The block with every text field normalised and redacted, the PII
    matches redacted per type, the number of rows that had any, and the
    redacted originals (for their digests)."""
    n = table.num_rows
    pii = np.zeros(n, dtype=bool)
    pii_counts: dict[str, int] = {}
    originals: list[tuple[str, str]] = []
    provenance = {name for name, _ in PROVENANCE}
    for name in table.column_names:
        if name in provenance:
            continue
        values = table[name].combine_chunks()
        if pa.types.is_list(values.type) and pa.types.is_struct(values.type.value_type):  # a chat
            values, flags = _clean_turns(values, config, pii_counts, originals)
        elif pa.types.is_list(values.type):  # passages
            passages, passage_flags = _clean_texts(values.values, config, pii_counts, originals)
            values, flags = rebuild_list(values, passages), rows_with_any(passage_flags, values)
        else:
            values, flags = _clean_texts(values, config, pii_counts, originals)
        pii |= flags
        table = table.set_column(table.schema.get_field_index(name), name, values)
    return table, pii_counts, int(pii.sum()), originals


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
        return pc.binary_join_element_wise("sft", _turns_identity(table["messages"].combine_chunks(), _SEPARATOR),
                                           _SEPARATOR)
    if kind == "eval":
        contexts = join_lists(table["contexts"].combine_chunks(), "\x1d")
        return pc.binary_join_element_wise("eval", pc.fill_null(table["question"], ""), contexts,
                                           pc.fill_null(table["reference"], ""), _SEPARATOR)
    return pc.binary_join_element_wise("preference", _prompt_identity(table["prompt"].combine_chunks()),
                                       *(pc.fill_null(table[c], "") for c in ("chosen", "rejected")), _SEPARATOR)


def _turns_identity(chats: pa.Array, separator: str) -> pa.Array:
    """Each chat as role/content pairs, joined."""
    turns = pc.binary_join_element_wise(pc.fill_null(chats.values.field("role"), ""),
                                        pc.fill_null(chats.values.field("content"), ""), _TURN)
    return join_lists(rebuild_list(chats, turns), separator)


def _prompt_identity(prompts: pa.Array) -> pa.Array:
    """A preference prompt as its id hashes it: a prompt of one user turn as
    that turn's text (so rows keep the ids they had when prompts were text),
    any other as its turns."""
    single = pc.fill_null(pc.list_value_length(prompts), 0).to_numpy(zero_copy_only=False) == 1
    one_user_turn = np.zeros(len(prompts), dtype=bool)
    if single.any():
        first = prompts.offsets.to_numpy()[:-1][single]
        one_user_turn[single] = pc.equal(prompts.values.field("role").take(pa.array(first)), "user") \
            .fill_null(False).to_numpy(zero_copy_only=False)
    return pc.if_else(pa.array(one_user_turn), _turn_texts(prompts, ""), _turns_identity(prompts, _PROMPT_TURNS))


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
    prompt's last user turn (preference: the turn its answers answer).
    Compared across kinds for the no-overlap rule."""
    if kind == "eval":
        return pc.fill_null(table["question"].combine_chunks(), "")
    if kind == "preference":
        return user_turn(table["prompt"].combine_chunks(), last=True)
    return user_turn(table["messages"].combine_chunks(), last=False)


def overlap_keys(texts: pa.Array, whitespace_collapsed: bool) -> pa.Array:
    """Case- and whitespace-insensitive hash of a prompt text. Cleaned text
    has single spaces already: only line breaks are left to flatten."""
    lowered = pc.utf8_lower(texts)
    if whitespace_collapsed:
        squeezed = pc.replace_substring(lowered, "\n", " ")
    else:
        squeezed = pc.utf8_trim_whitespace(pc.replace_substring_regex(lowered, r"\s+", " "))
    return stable_ids(squeezed)


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
        roles = pc.binary_join(rebuild_list(messages, messages.values.field("role")), ",")
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
        # a prompt is empty when its last user turn is (whatever system turn it has)
        frame["prompt_chars"] = _chars(user_turn(table["prompt"].combine_chunks(), last=True))
        for name in ("chosen", "rejected"):
            frame[f"{name}_chars"] = _chars(table[name].combine_chunks())
        frame["chosen_differs"] = pc.not_equal(table["chosen"], table["rejected"]).combine_chunks().fill_null(True)
    for name in text_fields:
        frame[f"text_{name}"] = field_text(table, name)
    return pa.table(frame)


# ------------------------------------------------------------------ one block


def time_stage(seconds: dict[str, float], stage: str, started: float) -> float:
    """Add the time since ``started`` to ``seconds[stage]``; returns now (the next stage's start)."""
    now = time.perf_counter()
    seconds[stage] = seconds.get(stage, 0.0) + now - started
    return now


def process_block(table: pa.Table, kind: str, config: CleaningConfig, regex_fields: tuple[str, ...],
                  scratch: Path) -> BlockOutcome:
    """Clean one block, write its rows to ``scratch``, and keep what the
    batch-wide decisions and the contract need."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    unmapped_fields = block_facts(table).unmapped_fields
    table = table.replace_schema_metadata(None)  # the facts are kept here, not in the rows written
    table, pii_counts, rows_with_pii, pii_originals = clean_block(table, kind, config)
    row_text = row_texts(table, kind)
    complete = complete_rows(table, kind)
    ids = stable_ids(identity_strings(table, kind, complete))
    table = table.append_column("id", ids).append_column(
        "overlap_key", overlap_keys(prompt_texts(table, kind), config.collapse_whitespace))
    tokens = count_tokens(row_text, config.tokenizer)
    remaining = count_pii(row_text, config.pii_patterns)
    started = time_stage(seconds, "clean", started)
    signatures = None
    if config.near_duplicate_threshold is not None:
        signatures = minhash_signatures(row_text, num_perm=config.minhash_permutations,
                                        shingle_words=config.shingle_words)
    started = time_stage(seconds, "minhash", started)
    frame = validation_block(table, kind, ids, tokens, remaining, regex_fields)
    with pa.ipc.new_file(scratch, table.schema) as writer:
        writer.write_table(table)
    time_stage(seconds, "write", started)
    return BlockOutcome(scratch=str(scratch), rows=table.num_rows, ids=ids, tokens=tokens, complete=complete,
                        signatures=signatures, frame=frame, pii_counts=pii_counts,
                        rows_with_pii=rows_with_pii, unmapped_fields=unmapped_fields, seconds=seconds,
                        pii_originals=pii_originals)


def process_span(path: str, span: BlockSpan, kind: str, config: CleaningConfig, default_source: str,
                 regex_fields: tuple[str, ...], scratch: Path) -> BlockOutcome:
    """A worker's job (``sluice.core.data.prepare_worker``): read its span of a JSONL file and clean it."""
    started = time.perf_counter()
    table = read_jsonl_span(path, span, kind, default_source)
    read = time.perf_counter() - started
    outcome = process_block(table, kind, config, regex_fields, scratch)
    outcome.seconds["read"] = outcome.seconds.get("read", 0.0) + read
    return outcome


# ------------------------------------------------------------------ outcomes between processes


def save_outcome(outcome: BlockOutcome, result: Path) -> None:
    """Write an outcome as ``<result>.frame.arrow``, ``<result>.npz`` and, last, ``<result>.json``."""
    with pa.ipc.new_file(f"{result}.frame.arrow", outcome.frame.schema) as writer:
        writer.write_table(outcome.frame)
    arrays = {"tokens": outcome.tokens, "complete": outcome.complete}
    if outcome.signatures is not None:
        arrays["signatures"] = outcome.signatures
    np.savez(f"{result}.npz", **arrays)
    summary = {"scratch": outcome.scratch, "rows": outcome.rows, "pii_counts": outcome.pii_counts,
               "rows_with_pii": outcome.rows_with_pii, "unmapped_fields": outcome.unmapped_fields,
               "seconds": outcome.seconds, "pii_originals": outcome.pii_originals}
    # the block is done only once this exists (renamed into place); owner-only, as it holds the redacted
    # originals on their way to the parent, which deletes it once read
    write_private(Path(f"{result}.json"), json.dumps(summary))


def load_outcome(result: Path) -> BlockOutcome:
    """The outcome :func:`save_outcome` wrote (the frame memory-mapped); its summary file, which holds the
    redacted originals, is deleted once read."""
    summary_path = Path(f"{result}.json")
    summary = json.loads(summary_path.read_text())
    summary_path.unlink()
    with pa.memory_map(f"{result}.frame.arrow") as source:
        frame = pa.ipc.open_file(source).read_all()
    with np.load(f"{result}.npz") as arrays:
        signatures = arrays["signatures"] if "signatures" in arrays else None
        tokens, complete = arrays["tokens"], arrays["complete"]
    return BlockOutcome(scratch=summary["scratch"], rows=summary["rows"], ids=frame["id"].combine_chunks(),
                        tokens=tokens, complete=complete, signatures=signatures, frame=frame,
                        pii_counts=summary["pii_counts"], rows_with_pii=summary["rows_with_pii"],
                        unmapped_fields=summary["unmapped_fields"], seconds=summary["seconds"],
                        pii_originals=[(kind, text) for kind, text in summary["pii_originals"]])
