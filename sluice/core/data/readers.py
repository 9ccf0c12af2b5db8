"""Reading sources into canonical Arrow batches of a dataset kind.

Sources are local files or folders (JSONL, JSON, CSV, Parquet), saved Hugging
Face ``datasets`` folders, and fsspec URLs (``s3://``, ``lakefs://``, …).
Large inputs are read in blocks; JSONL blocks take a fast vectorized path
(pyarrow) and fall back to an exact line-by-line path whenever a block has
anything unusual, so errors always name the file and line.

A row that cannot be read at all (malformed JSON, text that is not UTF-8) is
an :class:`InputError`: the input is corrupt, not merely invalid. So is a file
none of whose first rows is in a shape of its kind (:func:`check_shapes`):
one error naming the file, the fields it has and the shapes the kind reads,
before any contract runs, rather than every row failing a rule that points
elsewhere.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import pyarrow as pa

from sluice.core.data.canonical_blocks import canonical_block
from sluice.core.data.kinds import block_facts, no_shape_message, rows_to_table
from sluice.core.errors import ExplainedError

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


class InputError(ExplainedError, ValueError):
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


def check_shapes(table: pa.Table, kind: str, file: str) -> None:
    """Raise :class:`InputError` when no row of a file's first block is in a
    shape of ``kind`` (a single such row is the row's schema error)."""
    facts = block_facts(table)
    if table.num_rows and facts.shapeless_rows == table.num_rows:
        raise InputError([InputProblem(file, None, no_shape_message(kind, facts.shapeless_fields))])


def _shape_checked(blocks: Iterator[pa.Table], kind: str, file: str) -> Iterator[pa.Table]:
    """The blocks of one file, the first one with rows checked for shapes."""
    checked = False
    for table in blocks:
        if not checked and table.num_rows:
            check_shapes(table, kind, file)
            checked = True
        yield table


def read_jsonl(source: SourceFile, kind: str, default_source: str) -> Iterator[pa.Table]:
    """A JSONL file, block by block (blocks without rows are skipped)."""
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
    table = parse_jsonl_block(block, path, span.first_line, kind, default_source)
    if span.offset == 0:
        check_shapes(table, kind, path)
    return table


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


# CSV cells that hold a JSON list: always (a cell starting with "[" must be one), or only where the text is
# a JSON list of objects (a message list; any other text, "[1] Lock times …" say, stays text)
_LIST_FIELDS = {"sft": {"messages", "conversations"}, "eval": {"contexts", "retrieved_contexts"}, "preference": set()}
_MESSAGE_LIST_FIELDS = {"sft": set(), "eval": set(), "preference": {"prompt", "chosen", "rejected"}}
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape


def _decode_list_cells(row: dict[str, Any], kind: str, file: str, line: int) -> None:
    for name in (_LIST_FIELDS[kind] | _MESSAGE_LIST_FIELDS[kind]) & row.keys():
        value = row[name]
        if not (isinstance(value, str) and value.lstrip().startswith("[")):
            continue
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError as exc:
            if name in _MESSAGE_LIST_FIELDS[kind]:
                continue
            raise InputError([InputProblem(file, line, f"{name}: malformed JSON list ({exc})")]) from None
        if name in _LIST_FIELDS[kind] or (decoded and all(isinstance(item, dict) for item in decoded)):
            row[name] = decoded


def read_csv(source: SourceFile, kind: str, default_source: str, chunk_rows: int) -> Iterator[pa.Table]:
    """CSV with a header row; list fields (messages, conversations, contexts,
    preference message lists) as JSON text.
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
                _decode_list_cells(row, kind, source.location, line)
                rows.append((row, line))
                if len(rows) >= chunk_rows:
                    yield rows_to_table(rows, kind, source.location, default_source)
                    rows = []
        except csv.Error as exc:
            raise InputError([InputProblem(source.location, reader.line_num, f"malformed CSV ({exc})")]) from None
        if reader.fieldnames and any(_UNDECODABLE.search(name) for name in reader.fieldnames):
            raise InputError([InputProblem(source.location, 1,
                                           "not valid UTF-8 in the header; save the file as UTF-8")])
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
    """Canonical Arrow tables from one file, a block at a time (each carrying
    its :class:`~sluice.core.data.kinds.BlockFacts`). Raises
    :class:`InputError` for a file that cannot be read, or whose first block
    holds no row of a shape of ``kind``."""
    if source.format == "jsonl":
        blocks = read_jsonl(source, kind, default_source)
    elif source.format == "json":
        blocks = read_json_array(source, kind, default_source, chunk_rows)
    elif source.format == "csv":
        blocks = read_csv(source, kind, default_source, chunk_rows)
    elif source.format == "parquet":
        blocks = read_parquet(source, kind, default_source, chunk_rows)
    elif source.format == "hf":
        blocks = read_hf_dataset(source, kind, default_source, chunk_rows)
    else:
        raise ValueError(f"unknown format {source.format!r}")
    return _shape_checked(blocks, kind, source.location)
