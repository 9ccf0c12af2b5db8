"""Dataset kinds, their canonical schemas, and reading sources into canonical
Arrow batches.

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

Sources are local files or folders (JSONL, JSON, CSV, Parquet), saved Hugging
Face ``datasets`` folders, and fsspec URLs (``s3://``, ``lakefs://``, …).
Large inputs are read in blocks; JSONL blocks take a fast vectorized path
(pyarrow) and fall back to an exact line-by-line path whenever a block has
anything unusual, so errors always name the file and line.

A row that cannot be read at all (malformed JSON, text that is not UTF-8) is
an :class:`InputError`: the input is corrupt, not merely invalid. A row that
reads but has a missing field or a wrong type becomes a canonical row with
that field null and a note in ``schema_errors``; its contract decides.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

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
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet",
           ".pq": "parquet"}
BLOCK_BYTES = 32 << 20  # JSONL read size: memory stays ~2 blocks, whatever the file size
MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class InputProblem:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class InputError(ValueError):
    """The input cannot be read: names every problem found (file and line)."""

    def __init__(self, problems: list[InputProblem]):
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_REPORTED_PROBLEMS])
        more = f"\n  … and more (stopped after {len(problems)})" if len(problems) > MAX_REPORTED_PROBLEMS else ""
        super().__init__(f"cannot read the input ({len(problems)} problem(s)):\n{shown}{more}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (InputError, (self.problems,))  # crosses process boundaries whole


@dataclass(frozen=True)
class SourceFile:
    """One file to read: a local path or an fsspec URL."""

    location: str
    format: str  # jsonl | json | csv | parquet | hf
    size_bytes: int | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return PurePosixPath(self.location.rstrip("/")).name

    def open(self) -> BinaryIO:
        if "://" in self.location and not self.location.startswith("file://"):
            import fsspec

            return fsspec.open(self.location, "rb", **self.storage_options).open()  # type: ignore[no-any-return]
        return Path(self.location.removeprefix("file://")).open("rb")


# ------------------------------------------------------------------ finding files


def _is_hf_dataset_dir(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file())


def discover(source: str, storage_options: Mapping[str, Any] | None = None) -> list[SourceFile]:
    """The files a source names, in a stable order. Raises InputError for a
    path that does not exist or holds nothing readable."""
    options = dict(storage_options or {})
    if "://" in source and not source.startswith("file://"):
        return _discover_remote(source, options)
    path = Path(source.removeprefix("file://"))
    if not path.exists():
        raise InputError([InputProblem(source, None, "does not exist")])
    if path.is_dir():
        found = _walk_local(path)
        if not found:
            raise InputError([InputProblem(source, None, "folder holds no .jsonl, .json, .csv or .parquet files")])
        return found
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError([InputProblem(source, None, f"unsupported file type {path.suffix!r}: expected one of "
                                                     f"{', '.join(sorted(FORMATS))}")])
    return [SourceFile(str(path), fmt, path.stat().st_size)]


def _walk_local(folder: Path) -> list[SourceFile]:
    """Readable files under a folder, sorted; hidden files and folders are
    skipped, and a saved Hugging Face dataset inside is read as one dataset."""
    if _is_hf_dataset_dir(folder):
        return [SourceFile(str(folder), "hf")]
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found += _walk_local(entry)
        elif entry.suffix.lower() in FORMATS:
            found.append(SourceFile(str(entry), FORMATS[entry.suffix.lower()], entry.stat().st_size))
    return found


def _discover_remote(url: str, options: dict[str, Any]) -> list[SourceFile]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **options)
    protocol = url.split("://", 1)[0]
    if not fs.exists(path):
        raise InputError([InputProblem(url, None, "does not exist")])
    if fs.isdir(path):
        root = PurePosixPath(path)
        names = [n for n in sorted(fs.find(path))
                 if not any(part.startswith(".") for part in PurePosixPath(n).relative_to(root).parts)]
        found = [SourceFile(f"{protocol}://{name}", FORMATS[PurePosixPath(name).suffix.lower()],
                            fs.size(name), options)
                 for name in names if PurePosixPath(name).suffix.lower() in FORMATS]
        if not found:
            raise InputError([InputProblem(url, None, "holds no .jsonl, .json, .csv or .parquet files")])
        return found
    fmt = FORMATS.get(PurePosixPath(path).suffix.lower())
    if fmt is None:
        raise InputError([InputProblem(url, None, f"unsupported file type {PurePosixPath(path).suffix!r}")])
    return [SourceFile(url, fmt, fs.size(path), options)]


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


# ------------------------------------------------------------------ reading each format


def _decode_or_fail(block: bytes, file: str, first_line: int) -> None:
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + block[: exc.start].count(b"\n")
        raise InputError([InputProblem(file, line, f"not valid UTF-8 (byte 0x{block[exc.start]:02x}); "
                                                   "save the file as UTF-8")]) from None


def _jsonl_exact(block: bytes, file: str, first_line: int) -> list[tuple[Any, int]]:
    import orjson

    rows, problems = [], []
    for offset, line in enumerate(block.split(b"\n")):
        if not line.strip():
            continue
        try:
            rows.append((orjson.loads(line), first_line + offset))
        except orjson.JSONDecodeError as exc:
            problems.append(InputProblem(file, first_line + offset, f"malformed JSON ({exc})"))
            if len(problems) > MAX_REPORTED_PROBLEMS:
                break
    if problems:
        raise InputError(problems)
    return rows


def _read_blocks(handle: BinaryIO) -> Iterator[bytes]:
    """Blocks of whole lines; a line longer than a block makes a longer block."""
    pending = b""
    while True:
        data = handle.read(BLOCK_BYTES)
        if not data:
            if pending:
                yield pending
            return
        data = pending + data
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
            continue
        yield data[: cut + 1]
        pending = data[cut + 1:]


def parse_jsonl_block(block: bytes, file: str, first_line: int, kind: str, default_source: str) -> pa.Table:
    """One block of whole JSONL lines as a canonical table: vectorized when
    the block is plain, line by line otherwise (so errors name the line)."""
    import pyarrow.json as pajson

    _decode_or_fail(block, file, first_line)
    lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    try:
        parsed = pajson.read_json(io.BytesIO(block))
        if parsed.num_rows == lines:  # else blank lines: row ≠ line, read exactly
            table = canonical_block(parsed, kind, file, first_line, default_source)
            if table is not None:
                return table
    except pa.ArrowInvalid:
        pass  # malformed somewhere in the block: the exact path finds the line
    return rows_to_table(_jsonl_exact(block, file, first_line), kind, file, default_source)


def read_jsonl(source: SourceFile, kind: str, default_source: str) -> Iterator[pa.Table]:
    line = 1
    with source.open() as handle:
        for index, block in enumerate(_read_blocks(handle)):
            if index == 0 and block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]  # a UTF-8 byte-order mark
            table = parse_jsonl_block(block, source.location, line, kind, default_source)
            line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            if table.num_rows:
                yield table


@dataclass(frozen=True)
class BlockSpan:
    """Where one block of whole lines lies in a local JSONL file."""

    offset: int
    length: int
    first_line: int


def plan_jsonl_blocks(path: Path) -> list[BlockSpan]:
    """Split a local JSONL file into blocks of whole lines (one pass over the
    bytes, counting newlines), so workers can each read their own."""
    spans, offset, line = [], 0, 1
    with path.open("rb") as handle:
        for block in _read_blocks(handle):
            spans.append(BlockSpan(offset, len(block), line))
            offset += len(block)
            line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    return spans


def read_jsonl_span(path: str, span: BlockSpan, kind: str, default_source: str) -> pa.Table:
    with open(path, "rb") as handle:
        handle.seek(span.offset)
        block = handle.read(span.length)
    if span.offset == 0 and block.startswith(b"\xef\xbb\xbf"):
        block = block[3:]
    return parse_jsonl_block(block, path, span.first_line, kind, default_source)


def read_json_array(source: SourceFile, kind: str, default_source: str, chunk_rows: int) -> Iterator[pa.Table]:
    """A .json file: an array of rows (read whole: use JSONL for large data),
    or JSON lines under a .json name."""
    import orjson

    with source.open() as handle:
        data = handle.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    _decode_or_fail(data, source.location, 1)
    if not data.strip():
        return
    if data.lstrip()[:1] != b"[":
        yield from read_jsonl(SourceFile(source.location, "jsonl", source.size_bytes, source.storage_options),
                              kind, default_source)
        return
    try:
        rows = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        line = data[: getattr(exc, "pos", 0)].count(b"\n") + 1
        raise InputError([InputProblem(source.location, line, f"malformed JSON ({exc})")]) from None
    for start in range(0, len(rows), chunk_rows):
        chunk = [(row, start + i + 1) for i, row in enumerate(rows[start:start + chunk_rows])]
        yield rows_to_table(chunk, kind, source.location, default_source)


_LIST_FIELDS = {"messages", "contexts", "retrieved_contexts"}


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape


def read_csv(source: SourceFile, kind: str, default_source: str, chunk_rows: int) -> Iterator[pa.Table]:
    """CSV with a header row; list fields (messages, contexts) as JSON text.
    A row's line is where its record starts (a quoted cell may span lines)."""
    with source.open() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.DictReader(text)
        rows: list[tuple[Any, int]] = []
        try:
            while True:
                line = reader.line_num + 1 if reader.line_num else 2  # the header is line 1
                record = next(reader, None)
                if record is None:
                    break
                row: dict[str, Any] = {k: (v if v != "" else None) for k, v in record.items() if k is not None}
                for value in row.values():
                    if isinstance(value, str) and (bad := _UNDECODABLE.search(value)):
                        byte = ord(bad.group(0)) - 0xDC00
                        raise InputError([InputProblem(source.location, line, f"not valid UTF-8 (byte 0x{byte:02x}); "
                                                                              "save the file as UTF-8")])
                for name in _LIST_FIELDS & row.keys():
                    value = row[name]
                    if isinstance(value, str) and value.lstrip().startswith("["):
                        try:
                            row[name] = json.loads(value)
                        except json.JSONDecodeError as exc:
                            raise InputError([InputProblem(source.location, line,
                                                           f"{name}: malformed JSON list ({exc})")]) from None
                rows.append((row, line))
                if len(rows) >= chunk_rows:
                    yield rows_to_table(rows, kind, source.location, default_source)
                    rows = []
        except csv.Error as exc:
            raise InputError([InputProblem(source.location, reader.line_num, f"malformed CSV ({exc})")]) from None
        if reader.fieldnames and any(_UNDECODABLE.search(name) for name in reader.fieldnames):
            raise InputError([InputProblem(source.location, 1, "not valid UTF-8 in the header; save the file as UTF-8")])
        if rows:
            yield rows_to_table(rows, kind, source.location, default_source)


def _read_arrow_batches(batches: Iterator[pa.RecordBatch], file: str, kind: str,
                        default_source: str) -> Iterator[pa.Table]:
    row = 1
    for batch in batches:
        table = pa.Table.from_batches([batch])
        canonical = canonical_block(table, kind, file, row, default_source)
        if canonical is None:
            canonical = rows_to_table([(r, row + i) for i, r in enumerate(table.to_pylist())], kind, file,
                                      default_source)
        row += table.num_rows
        if canonical.num_rows:
            yield canonical


def read_parquet(source: SourceFile, kind: str, default_source: str, chunk_rows: int) -> Iterator[pa.Table]:
    import pyarrow.parquet as pq

    with source.open() as handle:
        try:
            parquet = pq.ParquetFile(handle)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError([InputProblem(source.location, None, f"not a readable Parquet file ({exc})")]) from None
        yield from _read_arrow_batches(parquet.iter_batches(batch_size=chunk_rows), source.location, kind,
                                       default_source)


def read_hf_dataset(source: SourceFile, kind: str, default_source: str, chunk_rows: int) -> Iterator[pa.Table]:
    """A folder written by ``datasets``' ``save_to_disk`` (every split of a
    DatasetDict, in order)."""
    from datasets import Dataset, load_from_disk

    loaded = load_from_disk(source.location)
    splits = {"": loaded} if isinstance(loaded, Dataset) else dict(loaded)
    for split, dataset in splits.items():
        name = f"{source.location}[{split}]" if split else source.location
        yield from _read_arrow_batches(iter(dataset.data.to_batches(max_chunksize=chunk_rows)), name, kind,
                                       default_source)


def read_source_file(source: SourceFile, kind: str, default_source: str, chunk_rows: int) -> Iterator[pa.Table]:
    """Canonical Arrow tables from one file, a block at a time."""
    if source.format == "jsonl":
        return read_jsonl(source, kind, default_source)
    if source.format == "json":
        return read_json_array(source, kind, default_source, chunk_rows)
    if source.format == "csv":
        return read_csv(source, kind, default_source, chunk_rows)
    if source.format == "parquet":
        return read_parquet(source, kind, default_source, chunk_rows)
    if source.format == "hf":
        return read_hf_dataset(source, kind, default_source, chunk_rows)
    raise ValueError(f"unknown format {source.format!r}")
