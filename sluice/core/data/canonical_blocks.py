"""Whole blocks read by pyarrow (JSONL, Parquet, Hugging Face datasets) as
canonical tables, vectorized.

The common shapes of each kind are read column by column: OpenAI chats
(text or text-part contents), ShareGPT conversations, Alpaca and
prompt/response columns, eval columns, flat preference columns. Anything
unusual — a row of no shape, a turn without text, an unknown ShareGPT
speaker, one field named two ways, a column of an unexpected type, TRL's
conversational preference rows — returns None, and the caller reads the
block exactly, row by row (:func:`sluice.core.data.kinds.rows_to_table`),
which says which row and field. Both paths give the same table and the same
:class:`~sluice.core.data.kinds.BlockFacts`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.core.data.kinds import (
    ALIASES,
    CANONICAL,
    MESSAGE,
    PROVENANCE_FIELDS,
    SHAREGPT_ROLES,
    TEXT_PART,
    BlockFacts,
    with_block_facts,
)
from sluice.core.data.list_arrays import compact, rows_with_any, turn_lists

# per kind: the block's canonical columns, which rows read each input column, and per-turn keys nothing reads
_Columns = tuple[dict[str, pa.Array], dict[str, np.ndarray], dict[str, int]]


class _AmbiguousColumn(Exception):
    """A block names one field in two ways (e.g. prompt on some rows,
    instruction on others): read it row by row."""


def _column(table: pa.Table, names: tuple[str, ...]) -> pa.ChunkedArray | None:
    present = [name for name in names if name in table.column_names]
    if len(present) > 1:
        raise _AmbiguousColumn(present)
    return table[present[0]] if present else None


def _is_text(column: pa.ChunkedArray | None) -> bool:
    return column is None or pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or \
        pa.types.is_null(column.type)


def _as_text(column: pa.ChunkedArray | None, length: int) -> pa.Array:
    if column is None or pa.types.is_null(column.type):
        return pa.nulls(length, pa.string())
    return column.combine_chunks().cast(pa.string())


def _given(column: pa.ChunkedArray | None, length: int) -> np.ndarray:
    if column is None:
        return np.zeros(length, dtype=bool)
    return np.asarray(column.is_valid().to_numpy(), dtype=bool)


def _struct_fields(kind: pa.DataType) -> dict[str, pa.DataType] | None:
    """The fields of a list<struct> type; None for any other type."""
    if not pa.types.is_list(kind) or not pa.types.is_struct(kind.value_type):
        return None
    inner = kind.value_type
    return {inner.field(i).name: inner.field(i).type for i in range(inner.num_fields)}


def _is_text_type(kind: pa.DataType | None) -> bool:
    return kind is not None and (pa.types.is_string(kind) or pa.types.is_null(kind))


def _extra_keys(lists: pa.Array, known: set[str], name: str) -> dict[str, np.ndarray]:
    """Per-turn keys no shape reads: per key, the rows where some turn gives it."""
    values = lists.values
    return {f"{name}[].{key}": rows_with_any(values.field(key).is_valid().to_numpy(zero_copy_only=False), lists)
            for key in (values.type.field(i).name for i in range(values.type.num_fields)) if key not in known}


def _part_texts(contents: pa.Array) -> pa.Array | None:
    """Text-part contents (list<struct<type, text>>) joined per turn; None
    unless every part is a text part with text."""
    fields = _struct_fields(contents.type)
    if fields is None or not (_is_text_type(fields.get("type")) and _is_text_type(fields.get("text"))):
        return None
    lists = compact(contents)
    parts = lists.values
    types, texts = parts.field("type"), parts.field("text")
    if parts.null_count or types.null_count or texts.null_count:
        return None
    if len(types) and not pc.all(pc.equal(types, TEXT_PART)).as_py():
        return None  # an image or other part: the exact path names its type
    return pc.binary_join(pa.ListArray.from_arrays(lists.offsets, texts.cast(pa.string()), mask=lists.is_null()),
                          "")  # joined as the serving API joins text parts


def _openai_array(column: pa.ChunkedArray) -> tuple[pa.Array, dict[str, np.ndarray]] | None:
    """An OpenAI messages column in canonical form, and its extra per-turn
    keys; None if its type or any turn is out of the ordinary."""
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), pa.list_(MESSAGE)), {}
    fields = _struct_fields(column.type)
    if fields is None or not _is_text_type(fields.get("role")) or "content" not in fields:
        return None
    lists = compact(column.combine_chunks())
    values = lists.values
    roles, contents = values.field("role"), values.field("content")
    if _is_text_type(fields["content"]):
        texts = contents
    else:
        texts = _part_texts(contents)
        if texts is None:
            return None
    if values.null_count or roles.null_count or texts.null_count:
        return None  # a turn without role or text: the exact path says which row
    inner = pa.StructArray.from_arrays([roles.cast(pa.string()), texts.cast(pa.string())], fields=list(MESSAGE))
    return pa.ListArray.from_arrays(lists.offsets, inner, mask=lists.is_null()), \
        _extra_keys(lists, {"role", "content"}, "messages")


def _sharegpt_array(column: pa.ChunkedArray) -> tuple[pa.Array, dict[str, np.ndarray]] | None:
    """A ShareGPT conversations column as canonical chats, and its extra
    per-turn keys; None if anything is out of the ordinary."""
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), pa.list_(MESSAGE)), {}
    fields = _struct_fields(column.type)
    said = [name for name in ("value", "content") if fields is not None and name in fields]
    if fields is None or not _is_text_type(fields.get("from")) or len(said) != 1 or \
            not _is_text_type(fields[said[0]]):
        return None
    lists = compact(column.combine_chunks())
    values = lists.values
    speakers, texts = values.field("from"), values.field(said[0])
    if values.null_count or speakers.null_count or texts.null_count:
        return None
    known = pa.array(list(SHAREGPT_ROLES), pa.string())
    index = pc.index_in(pc.utf8_lower(speakers.cast(pa.string())), value_set=known)
    if index.null_count:
        return None  # an unknown speaker: the exact path names it
    roles = pa.array(list(SHAREGPT_ROLES.values()), pa.string()).take(index)
    inner = pa.StructArray.from_arrays([roles, texts.cast(pa.string())], fields=list(MESSAGE))
    return pa.ListArray.from_arrays(lists.offsets, inner, mask=lists.is_null()), \
        _extra_keys(lists, {"from", said[0]}, "conversations")


def _sft_columns(table: pa.Table) -> _Columns | None:
    n = table.num_rows
    aliases = ALIASES["sft"]
    raw = {name: _column(table, aliases[name]) for name in aliases}
    if not all(_is_text(raw[name]) for name in ("system", "prompt", "input", "response")):
        return None
    in_messages = _given(raw["messages"], n)
    in_conversations = _given(raw["conversations"], n) & ~in_messages
    flat = ~in_messages & ~in_conversations & (
        _given(raw["prompt"], n) | _given(raw["input"], n) | _given(raw["response"], n))
    if not (in_messages | in_conversations | flat).all():
        return None  # a row of no shape: the exact path says so
    prompt, extra, response, system = (_as_text(raw[name], n) for name in ("prompt", "input", "response", "system"))
    with_input = pc.and_(extra.is_valid(), pc.not_equal(pc.utf8_length(extra), 0)).fill_null(False)
    user = pc.if_else(prompt.is_null(), extra,
                      pc.if_else(with_input, pc.binary_join_element_wise(prompt, extra, "\n\n"), prompt))
    messages = turn_lists([("system", system, True), ("user", user, False), ("assistant", response, False)])
    nested: dict[str, int] = {}
    for name, reader, rows in (("conversations", _sharegpt_array, in_conversations),
                               ("messages", _openai_array, in_messages)):
        if raw[name] is None:
            continue
        read = reader(raw[name])
        if read is None:
            return None
        chats, extra_keys = read
        messages = compact(pc.if_else(pa.array(rows), chats, messages))
        nested.update({key: int((given & rows).sum()) for key, given in extra_keys.items() if (given & rows).any()})
    read_by = {name: in_messages for name in aliases["messages"]} | \
        {name: ~in_messages for name in aliases["conversations"]} | \
        {name: flat for group in ("system", "prompt", "input", "response") for name in aliases[group]}
    return {"messages": messages}, read_by, nested


def _eval_columns(table: pa.Table) -> _Columns | None:
    n = table.num_rows
    aliases = ALIASES["eval"]
    question, reference = (_column(table, aliases[name]) for name in ("question", "reference"))
    contexts = _column(table, aliases["contexts"])
    if not (_is_text(question) and _is_text(reference)):
        return None
    if not (_given(question, n) | _given(contexts, n) | _given(reference, n)).all():
        return None  # a row of no shape
    if contexts is None or pa.types.is_null(contexts.type):
        context_lists = pa.nulls(n, pa.list_(pa.string()))
    elif pa.types.is_string(contexts.type):  # a single passage per row
        texts = contexts.combine_chunks()
        context_lists = pa.ListArray.from_arrays(pa.array(np.arange(n + 1), pa.int32()), texts, mask=texts.is_null())
    elif pa.types.is_list(contexts.type) and _is_text_type(contexts.type.value_type):
        context_lists = compact(contexts.combine_chunks().cast(pa.list_(pa.string())))
        if context_lists.values.null_count:
            return None  # a null passage: the exact path says which row
    else:
        return None
    every_row = np.ones(n, dtype=bool)
    return {"question": _as_text(question, n), "contexts": context_lists, "reference": _as_text(reference, n)}, \
        {name: every_row for names in aliases.values() for name in names}, {}


def _preference_columns(table: pa.Table) -> _Columns | None:
    """Flat preference rows only (texts); TRL's message lists go row by row."""
    n = table.num_rows
    aliases = ALIASES["preference"]
    found = {name: _column(table, names) for name, names in aliases.items()}
    if not all(_is_text(c) for c in found.values()):
        return None
    if not (_given(found["prompt"], n) | _given(found["chosen"], n) | _given(found["rejected"], n)).all():
        return None  # a row of no shape
    prompt = turn_lists([("system", _as_text(found["system"], n), True), ("user", _as_text(found["prompt"], n), False)])
    every_row = np.ones(n, dtype=bool)
    read_by = {name: every_row for group in ("prompt", "chosen", "rejected") for name in aliases[group]} | \
        {name: _given(found["prompt"], n) for name in aliases["system"]}  # a system prompt joins a given prompt
    return {"prompt": prompt, "chosen": _as_text(found["chosen"], n), "rejected": _as_text(found["rejected"], n)}, \
        read_by, {}


_READERS = {"sft": _sft_columns, "eval": _eval_columns, "preference": _preference_columns}


def _unmapped(table: pa.Table, read_by: dict[str, np.ndarray]) -> dict[str, int]:
    """Per input column, the rows that give it while their shape reads it not."""
    counts = {}
    for name in table.column_names:
        if name in PROVENANCE_FIELDS:
            continue
        unread = _given(table[name], table.num_rows)
        if name in read_by:
            unread = unread & ~read_by[name]
        if unread.any():
            counts[name] = int(unread.sum())
    return counts


def canonical_block(table: pa.Table, kind: str, file: str, first_line: int, default_source: str) -> pa.Table | None:
    """A block read by pyarrow as a canonical table carrying its
    :class:`BlockFacts`, vectorized; None when anything is unusual (the
    caller then reads the block exactly, row by row)."""
    n = table.num_rows
    try:
        read = _READERS[kind](table)
        source = _column(table, ("source",))
    except _AmbiguousColumn:
        return None
    if read is None or not _is_text(source):
        return None
    columns, read_by, nested = read
    given_source = _as_text(source, n)
    columns["source"] = pc.if_else(pc.equal(given_source, "").fill_null(True), default_source, given_source)
    columns["source_file"] = pa.repeat(pa.scalar(file, pa.string()), n)
    columns["source_line"] = pa.array(np.arange(first_line, first_line + n, dtype=np.int64))
    columns["schema_errors"] = pa.nulls(n, pa.string())
    unmapped = _unmapped(table, read_by) | nested
    return with_block_facts(pa.Table.from_pydict(columns, schema=CANONICAL[kind]),
                            BlockFacts(dict(sorted(unmapped.items()))))
