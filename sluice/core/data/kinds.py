"""Dataset kinds and their canonical form.

Three kinds, each with one canonical schema:

- **sft** — ``messages``: a chat, a list of ``{role, content}``. Rows given as
  ``prompt``/``response`` (optionally ``system``) become messages.
- **eval** — ``question``, ``contexts`` (a list of passages), ``reference``.
- **preference** — ``prompt``, ``chosen``, ``rejected``.

Common field names from other tools are accepted as aliases (e.g.
``instruction``/``output``, RAGAS's ``user_input``/``retrieved_contexts``/
``ground_truth``). Every row keeps where it came from: ``source`` (the row's
own ``source`` field, else the ingest's source name), ``source_file`` and
``source_line`` (the line in JSONL/CSV, the row number in Parquet and
Hugging Face datasets, counting from 1).

A row that reads but has a missing field or a wrong type becomes a canonical
row with that field null and a note in ``schema_errors``; its contract
decides. (A row that cannot be read at all is the readers' ``InputError``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DatasetKind = Literal["sft", "eval", "preference"]
KINDS: tuple[str, ...] = ("sft", "eval", "preference")
ROLES = ("system", "user", "assistant")

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
PROVENANCE = [("source", pa.string()), ("source_file", pa.string()), ("source_line", pa.int64()),
              ("schema_errors", pa.string())]
CANONICAL: dict[str, pa.Schema] = {
    "sft": pa.schema([("messages", pa.list_(MESSAGE)), *PROVENANCE]),
    "eval": pa.schema([("question", pa.string()), ("contexts", pa.list_(pa.string())),
                       ("reference", pa.string()), *PROVENANCE]),
    "preference": pa.schema([("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
                             *PROVENANCE]),
}
# canonical field → accepted input names, in order of preference
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "sft": {"messages": ("messages",), "system": ("system", "system_prompt"),
            "prompt": ("prompt", "instruction", "question", "input"),
            "response": ("response", "completion", "output", "answer")},
    "eval": {"question": ("question", "user_input", "query"),
             "contexts": ("contexts", "retrieved_contexts", "context"),
             "reference": ("reference", "ground_truth", "reference_answer", "answer")},
    "preference": {"prompt": ("prompt", "question", "instruction"), "chosen": ("chosen",),
                   "rejected": ("rejected",)},
}
# ------------------------------------------------------------------ one row, exactly


def _text(value: Any, name: str, errors: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    errors.append(f"{name}: expected text, got {type(value).__name__}")
    return None


def _first(row: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    return None


def canonical_row(row: Any, kind: str) -> tuple[dict[str, Any], list[str]]:
    """One input row as a canonical row (without provenance) and the schema
    problems found; wrongly typed fields become None."""
    errors: list[str] = []
    if not isinstance(row, Mapping):
        return {}, [f"row: expected an object with fields, got {type(row).__name__}"]
    aliases = ALIASES[kind]
    if kind == "sft":
        raw_messages = _first(row, aliases["messages"])
        messages = None
        if raw_messages is not None:
            if isinstance(raw_messages, list) and all(
                    isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in raw_messages):
                messages = [{"role": m["role"], "content": m["content"]} for m in raw_messages]
            else:
                errors.append("messages: expected a list of {role, content} objects with text values")
        else:
            prompt = _text(_first(row, aliases["prompt"]), "prompt", errors)
            response = _text(_first(row, aliases["response"]), "response", errors)
            system = _text(_first(row, aliases["system"]), "system", errors)
            if prompt is not None and response is not None:
                messages = ([{"role": "system", "content": system}] if system else []) + [
                    {"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return {"messages": messages}, errors
    if kind == "eval":
        contexts = _first(row, aliases["contexts"])
        if isinstance(contexts, str):
            contexts = [contexts]  # a single passage
        elif contexts is not None and not (isinstance(contexts, list) and all(isinstance(c, str) for c in contexts)):
            errors.append(f"contexts: expected a list of texts, got {type(contexts).__name__}")
            contexts = None
        return {"question": _text(_first(row, aliases["question"]), "question", errors), "contexts": contexts,
                "reference": _text(_first(row, aliases["reference"]), "reference", errors)}, errors
    return {name: _text(_first(row, aliases[name]), name, errors) for name in ("prompt", "chosen", "rejected")}, \
        errors


def rows_to_table(rows: list[tuple[Any, int]], kind: str, file: str, default_source: str) -> pa.Table:
    """Canonical table from (parsed row, line number) pairs."""
    records = []
    for row, line in rows:
        record, errors = canonical_row(row, kind)
        source = row.get("source") if isinstance(row, Mapping) else None
        record.update(source=source if isinstance(source, str) and source else default_source,
                      source_file=file, source_line=line, schema_errors="; ".join(errors) or None)
        records.append(record)
    return pa.Table.from_pylist(records, schema=CANONICAL[kind])


# ------------------------------------------------------------------ whole blocks, vectorized


class _AmbiguousColumn(Exception):
    """A block names one field in two ways (e.g. prompt on some rows,
    instruction on others): read it row by row."""


def _column(table: pa.Table, names: tuple[str, ...]) -> pa.ChunkedArray | None:
    present = [name for name in names if name in table.column_names]
    if len(present) > 1:
        raise _AmbiguousColumn(present)
    return table[present[0]] if present else None


def _compact(lists: pa.Array) -> pa.Array:
    """A list array whose null slots hold no hidden child values (pyarrow
    allows them; downstream code reads children by offsets)."""
    if lists.null_count == 0:
        return lists
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())
    return pa.ListArray.from_arrays(offsets, lists.flatten(), mask=lists.is_null())


def _is_text(column: pa.ChunkedArray | None) -> bool:
    return column is None or pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or \
        pa.types.is_null(column.type)


def _as_text(column: pa.ChunkedArray | None, length: int) -> pa.Array:
    if column is None or pa.types.is_null(column.type):
        return pa.nulls(length, pa.string())
    return column.combine_chunks().cast(pa.string())


def _messages_array(column: pa.ChunkedArray) -> pa.Array | None:
    """A list<struct<role, content>> column in canonical form, or None if its
    type is anything else."""
    kind = column.type
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.list_(MESSAGE))
    if not pa.types.is_list(kind) or not pa.types.is_struct(kind.value_type):
        return None
    names = {kind.value_type.field(i).name: kind.value_type.field(i).type for i in range(kind.value_type.num_fields)}
    if not all(n in names and (pa.types.is_string(names[n]) or pa.types.is_null(names[n]))
               for n in ("role", "content")):
        return None
    lists = _compact(column.combine_chunks())
    values = lists.values
    roles, contents = values.field("role"), values.field("content")
    if values.null_count or roles.null_count or contents.null_count:
        return None  # a turn without role or text: the exact path says which row
    inner = pa.StructArray.from_arrays([roles.cast(pa.string()), contents.cast(pa.string())], fields=list(MESSAGE))
    return pa.ListArray.from_arrays(lists.offsets, inner, mask=lists.is_null())


def _prompt_response_messages(system: pa.Array, prompt: pa.Array, response: pa.Array) -> pa.Array:
    """[system?, user, assistant] per row from flat columns (null where prompt
    or response is missing)."""
    n = len(prompt)
    has_system = pc.and_(system.is_valid(), pc.not_equal(pc.utf8_length(system), 0)).fill_null(False)
    has_system = has_system.to_numpy(zero_copy_only=False)
    missing = pc.or_(prompt.is_null(), response.is_null())
    complete = ~missing.to_numpy(zero_copy_only=False)
    counts = np.where(complete, 2 + has_system.astype(np.int64), 0)  # a missing row holds no turns
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # positions of each row's turns in the flat child arrays
    role = np.empty(offsets[-1], dtype=np.int8)  # index into ROLES
    take = np.empty(offsets[-1], dtype=np.int64)
    rows = np.nonzero(complete)[0]
    starts = offsets[:-1][rows]
    with_system = rows[has_system[rows]]
    role[offsets[:-1][with_system]] = ROLES.index("system")
    take[offsets[:-1][with_system]] = with_system  # into system
    user_at = starts + has_system[rows]
    role[user_at], take[user_at] = ROLES.index("user"), n + rows  # into prompt
    role[user_at + 1], take[user_at + 1] = ROLES.index("assistant"), 2 * n + rows  # into response
    roles = pa.array(ROLES, pa.string()).take(pa.array(role))
    contents = pa.concat_arrays([system, prompt, response]).take(pa.array(take, pa.int64()))
    inner = pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner, mask=missing)


def canonical_block(table: pa.Table, kind: str, file: str, first_line: int, default_source: str) -> pa.Table | None:
    """A block read by pyarrow as a canonical table, vectorized; None when a
    column has an unexpected type (the caller then reads the block exactly,
    row by row, to say which row and field)."""
    try:
        return _canonical_block(table, kind, file, first_line, default_source)
    except _AmbiguousColumn:
        return None


def _canonical_block(table: pa.Table, kind: str, file: str, first_line: int, default_source: str) -> pa.Table | None:
    n = table.num_rows
    aliases = ALIASES[kind]
    columns: dict[str, pa.Array]
    if kind == "sft":
        raw = _column(table, aliases["messages"])
        flat = {name: _column(table, aliases[name]) for name in ("system", "prompt", "response")}
        if not all(_is_text(c) for c in flat.values()):
            return None
        from_flat = _prompt_response_messages(*(_as_text(flat[name], n) for name in ("system", "prompt", "response")))
        if raw is None:
            messages = from_flat
        else:
            given = _messages_array(raw)
            if given is None:
                return None
            messages = _compact(pc.if_else(given.is_valid(), given, from_flat))
        columns = {"messages": messages}
    elif kind == "eval":
        question, reference = (_column(table, aliases[n_]) for n_ in ("question", "reference"))
        contexts = _column(table, aliases["contexts"])
        if not (_is_text(question) and _is_text(reference)):
            return None
        if contexts is None or pa.types.is_null(contexts.type):
            context_lists = pa.nulls(n, pa.list_(pa.string()))
        elif pa.types.is_string(contexts.type):  # a single passage per row
            texts = contexts.combine_chunks()
            context_lists = pa.ListArray.from_arrays(pa.array(np.arange(n + 1), pa.int32()), texts,
                                                     mask=texts.is_null())
        elif pa.types.is_list(contexts.type) and (pa.types.is_string(contexts.type.value_type)
                                                  or pa.types.is_null(contexts.type.value_type)):
            context_lists = _compact(contexts.combine_chunks().cast(pa.list_(pa.string())))
            if context_lists.values.null_count:
                return None  # a null passage: the exact path says which row
        else:
            return None
        columns = {"question": _as_text(question, n), "contexts": context_lists,
                   "reference": _as_text(reference, n)}
    else:
        found = {name: _column(table, aliases[name]) for name in ("prompt", "chosen", "rejected")}
        if not all(_is_text(c) for c in found.values()):
            return None
        columns = {name: _as_text(c, n) for name, c in found.items()}

    source = _column(table, ("source",))
    if not _is_text(source):
        return None
    given_source = _as_text(source, n)
    columns["source"] = pc.if_else(pc.equal(given_source, "").fill_null(True), default_source, given_source)
    columns["source_file"] = pa.repeat(pa.scalar(file, pa.string()), n)
    columns["source_line"] = pa.array(np.arange(first_line, first_line + n, dtype=np.int64))
    columns["schema_errors"] = pa.nulls(n, pa.string())
    return pa.Table.from_pydict(columns, schema=CANONICAL[kind])
