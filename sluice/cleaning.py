"""Vectorized text-cleaning primitives over Arrow string arrays.

Everything here is a pure function of its input (no I/O, no global state
besides read-only tables) and is built for the ingest pipeline's volume:
about a million short rows in a few seconds on two cores. The hot paths run
in Arrow compute kernels (RE2 regular expressions) or in numpy over the raw
UTF-8 bytes of the Arrow buffers; Python loops appear only where a step is
inherently per item and cheap (hashing each row for its id, validating the
few PII candidates, normalising the few rows that need it, resolving the few
near-duplicate pairs).

* :func:`normalize_text` — Unicode normalisation and whitespace clean-up.
* :func:`redact_pii` / :func:`count_pii` — e-mail, phone, card and IPv4
  redaction with type tags, plus configurable extra patterns.
* :func:`stable_ids` — a content id per row (xxh3-128 hex digest).
* :func:`minhash_signatures` / :func:`near_duplicates` — MinHash over word
  shingles and LSH banding to find near-duplicate rows.
* :func:`count_tokens` — whitespace or Hugging Face tokenizer token counts.

Speed: 1M rows of ~150-170 characters take about 3-4 s for all of the above
on two cores (about 4.5 s on one). Most rows need no Unicode normalisation,
no whitespace repair and hold no PII, so each step first finds the rows that
need work with one cheap vectorized scan and rewrites only those. Word
tokenisation, hashing and MinHash run in numpy over chunks of a few MB, so
memory stays bounded; the numpy-heavy steps spread their chunks over
:data:`THREADS` threads (numpy releases the GIL), with identical results.
"""

from __future__ import annotations

import functools
import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

__all__ = [
    "THREADS",
    "PII_PATTERNS",
    "RedactionResult",
    "count_pii",
    "count_tokens",
    "lsh_parameters",
    "minhash_signatures",
    "near_duplicates",
    "normalize_text",
    "redact_pii",
    "stable_ids",
]

ArrayLike = pa.Array | pa.ChunkedArray
_T = TypeVar("_T")
_R = TypeVar("_R")

# --------------------------------------------------------------------------------------------------
# Arrow helpers
# --------------------------------------------------------------------------------------------------


def _as_string_array(values: ArrayLike | Sequence[str | None]) -> pa.Array:
    """One contiguous ``string`` or ``large_string`` array (nulls kept)."""
    if isinstance(values, pa.ChunkedArray):
        arr = pa.concat_arrays(values.chunks) if values.num_chunks else pa.array([], type=values.type)
    elif isinstance(values, pa.Array):
        arr = values
    else:
        arr = pa.array(list(values), type=pa.string())
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr
    if pa.types.is_null(arr.type) or pa.types.is_string_view(arr.type):
        return arr.cast(pa.string())
    raise TypeError(f"expected an array of strings, got {arr.type}")


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as a numpy bool array, nulls read as False."""
    if isinstance(values, pa.ChunkedArray):
        values = pa.concat_arrays(values.chunks) if values.num_chunks else pa.array([], pa.bool_())
    return np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _replace_rows(arr: pa.Array, rows: np.ndarray, replacements: pa.Array) -> pa.Array:
    """``arr`` with the rows flagged in the bool mask ``rows`` taken, in order, from ``replacements``."""
    if not rows.any():
        return arr
    if rows.all():
        return replacements.cast(arr.type)
    return pc.replace_with_mask(arr, pa.array(rows), replacements.cast(arr.type))


def _bytes_and_offsets(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array and its row offsets into them (int64, n + 1).

    Null rows read as empty strings. Nothing is copied unless a null slot spans bytes (Arrow
    allows that, though its kernels do not produce it).
    """
    n = len(arr)
    if n == 0:
        return np.empty(0, np.uint8), np.zeros(1, np.int64)
    bufs = arr.buffers()
    otype = np.dtype(np.int64 if pa.types.is_large_string(arr.type) else np.int32)
    offsets = np.frombuffer(bufs[1], dtype=otype, count=n + 1, offset=arr.offset * otype.itemsize)
    offsets = offsets.astype(np.int64)
    if arr.null_count and np.diff(offsets)[~_valid(arr)].any():
        return _bytes_and_offsets(arr.fill_null(""))
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None and bufs[2].size else np.empty(0, np.uint8)
    return data, offsets


def _valid(arr: pa.Array) -> np.ndarray:
    """Per row: not null."""
    if arr.null_count == 0:
        return np.ones(len(arr), bool)
    return _mask(arr.is_valid())


# Threads for the numpy-heavy steps (None: the CPUs this process may use, at most 4). numpy releases
# the GIL in its loops, and each thread works on its own rows; results never depend on this.
THREADS: int | None = None


def _available_cpus() -> int:
    try:
        return min(4, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return min(4, os.cpu_count() or 1)


def _parallel_map(fn: Callable[[_T], _R], items: Sequence[_T], parallel: bool = True) -> list[_R]:
    """``[fn(x) for x in items]``, on up to :data:`THREADS` threads (one if not ``parallel``)."""
    workers = min(len(items), THREADS or _available_cpus()) if parallel else 1
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, items))
    return [fn(item) for item in items]


def _row_chunks(offsets: np.ndarray, max_bytes: int = 1 << 23, max_rows: int = 1 << 15) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges of at most ``max_rows`` rows and about ``max_bytes`` bytes (at least one row)."""
    n = len(offsets) - 1
    lo = 0
    while lo < n:
        hi = min(n, lo + max_rows)
        fit = int(np.searchsorted(offsets, offsets[lo] + max_bytes, side="right")) - 1
        hi = max(lo + 1, min(hi, fit))
        yield lo, hi
        lo = hi


# --------------------------------------------------------------------------------------------------
# Byte-level character classes (shared by normalisation and token counting)
# --------------------------------------------------------------------------------------------------

_NORMAL, _HSPACE, _NEWLINE, _DROP = 0, 1, 2, 3
# ASCII bytes: space and tab are horizontal space; LF, VT, FF, CR line breaks; other C0 controls and
# DEL are dropped. Bytes >= 0x80 are normal here; the multi-byte characters below are found apart.
_ASCII_CLASS = np.zeros(256, np.uint8)
_ASCII_CLASS[[0x09, 0x20]] = _HSPACE
_ASCII_CLASS[[0x0A, 0x0B, 0x0C, 0x0D]] = _NEWLINE
_ASCII_CLASS[[*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F]] = _DROP
# Multi-byte characters with a class: C1 controls (dropped; NEL is a line break), NBSP and the other
# Unicode space separators (horizontal space), LINE/PARAGRAPH SEPARATOR (line break), zero-width
# space/non-joiner/joiner, word joiner and BOM (dropped).
_MULTIBYTE_CLASS = {cp: _DROP for cp in range(0x80, 0xA0)}
_MULTIBYTE_CLASS.update({0x85: _NEWLINE, 0xA0: _HSPACE, 0x1680: _HSPACE, 0x2028: _NEWLINE, 0x2029: _NEWLINE,
                         0x202F: _HSPACE, 0x205F: _HSPACE, 0x3000: _HSPACE, 0x200B: _DROP, 0x200C: _DROP,
                         0x200D: _DROP, 0x2060: _DROP, 0xFEFF: _DROP})
_MULTIBYTE_CLASS.update({cp: _HSPACE for cp in range(0x2000, 0x200B)})
_MB_CODEPOINTS = np.array(sorted(_MULTIBYTE_CLASS), dtype=np.int64)
_MB_CLASSES = np.array([_MULTIBYTE_CLASS[cp] for cp in sorted(_MULTIBYTE_CLASS)], dtype=np.uint8)
_MB_LEADS = (0xC2, 0xE1, 0xE2, 0xE3, 0xEF)  # first UTF-8 byte of every code point above


def _multibyte_classes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, byte lengths (2 or 3) and classes of the classed multi-byte characters in ``data``."""
    lead = np.flatnonzero(data >= 0xC2)
    if lead.size:
        first = data[lead]
        sel = first == _MB_LEADS[0]
        for byte in _MB_LEADS[1:]:
            sel |= first == byte
        lead = lead[sel]
    if lead.size == 0:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.uint8)
    last = len(data) - 1
    b0 = data[lead].astype(np.int64)
    b1 = data[np.minimum(lead + 1, last)].astype(np.int64)
    b2 = data[np.minimum(lead + 2, last)].astype(np.int64)
    two = b0 < 0xE0
    cp = np.where(two, ((b0 & 0x1F) << 6) | (b1 & 0x3F), ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F))
    slot = np.minimum(np.searchsorted(_MB_CODEPOINTS, cp), len(_MB_CODEPOINTS) - 1)
    hit = _MB_CODEPOINTS[slot] == cp
    return lead[hit], np.where(two[hit], 2, 3), _MB_CLASSES[slot[hit]]


def _runs(flag: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each maximal run of True in ``flag`` that stays within one row.

    ``offsets`` are the rows' byte offsets into ``flag`` (starting at 0, n + 1 of them).
    """
    size = len(flag)
    if size == 0:
        empty = np.empty(0, np.int64)
        return empty, empty
    change = np.empty(size + 1, bool)
    change[0] = flag[0]
    np.not_equal(flag[1:], flag[:-1], out=change[1:size])
    change[size] = flag[-1]
    pos = np.flatnonzero(change)
    # a run that spans a row boundary is cut there: insert an end and a start at the boundary
    inner = offsets[1:-1]
    inner = inner[(inner > 0) & (inner < size)]
    if inner.size:
        inner = inner[np.r_[True, inner[1:] != inner[:-1]]]
        inner = inner[flag[inner] & flag[inner - 1]]
        if inner.size:
            pos = np.sort(np.concatenate([pos, inner, inner]), kind="stable")  # a merge of sorted runs
    return pos[0::2], pos[1::2]


def _from_pieces(pieces: list[np.ndarray], lengths: list[np.ndarray], type_: pa.DataType,
                 valid: np.ndarray | None = None) -> pa.Array:
    """A string array from per-chunk byte arrays and row lengths (``valid``: False rows are null)."""
    data = np.concatenate(pieces) if pieces else np.empty(0, np.uint8)
    row_lengths = np.concatenate(lengths) if lengths else np.empty(0, np.int64)
    large = pa.types.is_large_string(type_)
    offsets = np.zeros(len(row_lengths) + 1, np.int64 if large else np.int32)
    np.cumsum(row_lengths, out=offsets[1:])
    cls = pa.LargeStringArray if large else pa.StringArray
    if valid is None or valid.all():
        return cls.from_buffers(len(row_lengths), pa.py_buffer(offsets), pa.py_buffer(data))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return cls.from_buffers(len(row_lengths), pa.py_buffer(offsets), pa.py_buffer(data), bitmap,
                            int(len(valid) - valid.sum()))


# --------------------------------------------------------------------------------------------------
# 1. Normalisation
# --------------------------------------------------------------------------------------------------

_UNICODE_FORMS = ("NFC", "NFKC", "NFD", "NFKD")
# Line breaks other than "\n": CRLF, CR, vertical tab, form feed, NEL, LINE/PARAGRAPH SEPARATOR.
_LINE_BREAK_RE = r"\r\n?|[\x0b\x0c\x{85}\x{2028}\x{2029}]"
# Invisible characters that are removed: C0/C1 controls other than \t and \n (and the line breaks
# above, which become "\n" first), zero-width space/non-joiner/joiner, word joiner, BOM.
_INVISIBLE_CLASS = r"\x00-\x08\x0e-\x1f\x7f-\x{84}\x{86}-\x{9f}\x{200b}-\x{200d}\x{2060}\x{feff}"
# Horizontal whitespace other than the plain space: tab and the Unicode space separators (Zs).
_HSPACE_CLASS = r"\t\x{a0}\x{1680}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}"
_EDGE_SPACE_RE = r"^[\s\p{Z}]|[\s\p{Z}]$"
# One scan that says whether a row needs any rewriting at all (most rows do not).
_DIRTY_BASE_RE = f"{_LINE_BREAK_RE}|[{_INVISIBLE_CLASS}]|{_EDGE_SPACE_RE}"
_DIRTY_COLLAPSE_RE = f"{_DIRTY_BASE_RE}|[{_HSPACE_CLASS}]|  | \\n|\\n |\\n\\n\\n"


@functools.lru_cache(maxsize=None)
def _changing_ranges(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (first, last) code point ranges of the non-ASCII characters that ``kind`` (a Unicode
    normal form, or ``"lower"``) may change. A string without any of them is already in that form.

    For a normal form: characters that the form rewrites on their own, combining marks (which may be
    reordered or composed) and the second characters of canonical compositions (Hangul jamo
    included). Unassigned code points (in this Python's Unicode version) and everything above
    U+2FFFF are included, so rows holding them are always rewritten. Built once per process
    (~0.05 s).
    """
    if kind == "lower":
        def changes(ch: str) -> bool:
            return ch.lower() != ch
    else:
        second: set[int] = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
        for cp in range(0x80, 0x30000):
            parts = unicodedata.decomposition(chr(cp)).split()
            if len(parts) == 2 and not parts[0].startswith("<"):
                second.add(int(parts[1], 16))

        def changes(ch: str) -> bool:
            return bool(unicodedata.combining(ch)) or ord(ch) in second or unicodedata.normalize(kind, ch) != ch

    ranges: list[list[int]] = []
    for cp in range(0x80, 0x30000):
        ch = chr(cp)
        if 0xD800 <= cp <= 0xDFFF or not (unicodedata.category(ch) == "Cn" or changes(ch)):
            continue
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    ranges.append([0x30000, 0x10FFFF])
    bounds = np.array(ranges, dtype=np.int64)
    return bounds[:, 0].copy(), bounds[:, 1].copy()


def _rows_with_changing_chars(arr: pa.Array, kind: str) -> np.ndarray:
    """Per row: holds a character that ``kind`` may change (see :func:`_changing_ranges`).

    Decodes only the non-ASCII characters, with numpy, and looks their code points up in the ranges.
    """
    found = np.zeros(len(arr), bool)
    data, offsets = _bytes_and_offsets(arr)
    first, last = _changing_ranges(kind)
    for lo, hi in _row_chunks(offsets, max_bytes=1 << 24, max_rows=1 << 20):
        base = offsets[lo]
        chunk = data[base:offsets[hi]]
        lead = np.flatnonzero(chunk >= 0xC2)  # first bytes of multi-byte characters
        if lead.size == 0:
            continue
        end = len(chunk) - 1
        b0 = chunk[lead].astype(np.int64)
        b1 = chunk[np.minimum(lead + 1, end)].astype(np.int64) & 0x3F
        b2 = chunk[np.minimum(lead + 2, end)].astype(np.int64) & 0x3F
        b3 = chunk[np.minimum(lead + 3, end)].astype(np.int64) & 0x3F
        cp = np.where(b0 < 0xE0, ((b0 & 0x1F) << 6) | b1,
                      np.where(b0 < 0xF0, ((b0 & 0x0F) << 12) | (b1 << 6) | b2,
                               ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3))
        slot = np.searchsorted(first, cp, side="right") - 1
        hit = lead[(slot >= 0) & (cp <= last[np.maximum(slot, 0)])]
        if hit.size:
            found[lo + np.searchsorted(offsets[lo:hi + 1] - base, hit, side="right") - 1] = True
    return found & _valid(arr)


def normalize_text(values: ArrayLike, unicode_form: str | None = "NFC",
                   collapse_whitespace: bool = True) -> pa.Array:
    """Unicode-normalise and clean the whitespace of each string; nulls stay null.

    * ``unicode_form``: ``"NFC"`` (default), ``"NFKC"`` (also folds compatibility characters such as
      the ``ﬁ`` ligature or full-width letters), ``"NFD"``/``"NFKD"``, or ``None`` to skip.
    * Always: ``\\r\\n``, ``\\r`` (and vertical tab, form feed, U+0085, U+2028, U+2029) become
      ``\\n``; control characters other than ``\\n`` and ``\\t`` and the zero-width characters
      U+200B..U+200D, U+2060, U+FEFF are removed; leading and trailing whitespace is stripped.
    * ``collapse_whitespace=True`` (default) also collapses each run of horizontal whitespace
      (spaces, tabs, NBSP and the other Unicode space separators) to one space, drops spaces next
      to a newline, and collapses 3+ consecutive newlines to two. Newlines inside the text are
      kept. With ``False`` such runs are left as they are.

    Only rows that need it are rewritten: a row goes to the Unicode normaliser (Python's
    ``unicodedata``) only if it holds a character the form can change (found by decoding the
    non-ASCII characters with numpy), and to the whitespace rewrite only if one RE2 scan flags it;
    that rewrite is numpy over the bytes.
    """
    arr = _as_string_array(values)
    if len(arr) == 0:
        return arr
    if unicode_form is not None:
        form = unicode_form.upper()
        if form not in _UNICODE_FORMS:
            raise ValueError(f"unicode_form must be one of {_UNICODE_FORMS} or None, got {unicode_form!r}")
        todo = _rows_with_changing_chars(arr, form)
        if todo.any():
            # Python's unicodedata, not pc.utf8_normalize: in pyarrow 25 the latter does not compose
            # for NFC/NFKC (apache/arrow GH-51225), e.g. "e\u0301" stays decomposed.
            rows = arr.take(pa.array(np.flatnonzero(todo))).to_pylist()
            normalized = pa.array([unicodedata.normalize(form, text) for text in rows], type=arr.type)
            arr = _replace_rows(arr, todo, normalized)
    dirty = _mask(pc.match_substring_regex(arr, _DIRTY_COLLAPSE_RE if collapse_whitespace else _DIRTY_BASE_RE))
    if not dirty.any():
        return arr
    if collapse_whitespace and dirty.mean() > 0.5:  # cheaper than picking the rows out (clean rows pass unchanged)
        return _collapse_whitespace(arr)
    sub = arr.filter(pa.array(dirty))
    return _replace_rows(arr, dirty, _collapse_whitespace(sub) if collapse_whitespace else _clean_whitespace(sub))


def _clean_whitespace(arr: pa.Array) -> pa.Array:
    """Line breaks to ``\\n``, invisible characters removed, edges stripped (no collapsing)."""
    arr = pc.replace_substring_regex(arr, _LINE_BREAK_RE, "\n")
    arr = pc.replace_substring_regex(arr, f"[{_INVISIBLE_CLASS}]+", "")
    return pc.utf8_trim_whitespace(arr)


def _collapse_whitespace(arr: pa.Array) -> pa.Array:
    """The full whitespace clean-up of :func:`normalize_text` over the bytes of non-null rows.

    Every byte gets a class (normal, horizontal space, line break, dropped). A maximal run of
    non-normal bytes inside a row becomes nothing at the start or end of the row, else ``min(line
    breaks, 2)`` newlines if it holds any line break, else one space if it holds any space, else
    nothing (only dropped characters). ``\\r\\n`` counts as one line break.
    """
    data, offsets = _bytes_and_offsets(arr)

    def clean(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = bounds
        base = offsets[lo]
        out, rel = _collapse_chunk(data[base:offsets[hi]], offsets[lo:hi + 1] - base)
        return out, np.diff(rel)

    done = _parallel_map(clean, list(_row_chunks(offsets, max_bytes=1 << 23, max_rows=1 << 16)))
    return _from_pieces([d for d, _ in done], [n for _, n in done], arr.type,
                        None if arr.null_count == 0 else _valid(arr))


def _collapse_chunk(data: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = len(data)
    if size == 0:
        return data, rel
    # bytes that may need rewriting: ASCII controls, space, DEL and the classed multi-byte characters
    flag = data <= 0x20
    flag |= data == 0x7F
    lead, width, mb_class = _multibyte_classes(data)
    if lead.size:
        flag[lead] = True
        flag[lead + 1] = True
        flag[lead[width == 3] + 2] = True
    # ... except a lone plain space between two other bytes of the same row: already clean
    lone = data == 0x20
    if size > 2:
        lone[1:-1] &= ~(flag[:-2] | flag[2:])
    lone[0] = lone[-1] = False
    non_empty = rel[1:] > rel[:-1]
    lone[rel[:-1][non_empty]] = False
    lone[rel[1:][non_empty] - 1] = False
    flag &= ~lone
    starts, ends = _runs(flag, rel)
    if starts.size == 0:
        return data, rel
    # classes of the bytes inside the runs (few, compared with the whole text)
    n_runs = len(starts)
    lengths = ends - starts
    run_of = np.repeat(np.arange(n_runs), lengths)
    where = np.arange(len(run_of)) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    run_bytes = data[where]
    cls = _ASCII_CLASS[run_bytes]
    if lead.size:
        at = np.searchsorted(where, lead)
        cls[at] = mb_class
        cls[at + 1] = _DROP
        cls[at[width == 3] + 2] = _DROP
    cr = np.flatnonzero(run_bytes[:-1] == 0x0D)
    if cr.size:  # CR LF (in one run, so in one row) is one line break
        cr = cr[(run_bytes[cr + 1] == 0x0A) & (run_of[cr + 1] == run_of[cr])]
        cls[cr] = _DROP
    n_break = np.bincount(run_of[cls == _NEWLINE], minlength=n_runs)
    n_drop = np.bincount(run_of[cls == _DROP], minlength=n_runs)
    row_of_run = np.searchsorted(rel, starts, side="right") - 1
    at_edge = (starts == rel[row_of_run]) | (ends == rel[row_of_run + 1])
    emit = np.where(at_edge, 0, np.where(n_break > 0, np.minimum(n_break, 2), lengths > n_break + n_drop))
    out = data.copy()
    keep = ~flag
    for pos, byte in ((starts[(emit > 0) & (n_break > 0)], 0x0A), (starts[emit == 2] + 1, 0x0A),
                      (starts[(emit > 0) & (n_break == 0)], 0x20)):
        keep[pos] = True
        out[pos] = byte
    removed = np.bincount(row_of_run, weights=lengths - emit, minlength=len(rel) - 1).astype(np.int64)
    new_rel = np.zeros(len(rel), np.int64)
    np.cumsum(np.diff(rel) - removed, out=new_rel[1:])
    return out[keep], new_rel


# --------------------------------------------------------------------------------------------------
# 2. PII
# --------------------------------------------------------------------------------------------------

# Each built-in pattern is valid, and means the same, in RE2 (used for the vectorized scan over all
# rows) and in Python's ``re`` with re.ASCII (used on the few candidate rows, where each match is
# validated before it is replaced). Only ASCII classes, \b and \B are used: both engines read them
# the same way.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
PII_PATTERNS: dict[str, str] = {
    # local@domain.tld (bounded repeats keep Python's backtracking linear on long rows)
    "email": r"\b[A-Za-z0-9_][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}\b",
    # Phone numbers, each shape with separators (validated: 9-15 digits, not part of a longer
    # number, such as a dotted one or one more group of 3+ digits after a space):
    #   international  +44 20 7946 0958, +1-202-555-0143, +1 (202) 555-0143, +442079460958
    #   area code      (555) 123-4567, (020) 7946 0958
    #   NANP           555-123-4567, 555.123.4567, 1-800-555-0199
    #   trunk 0        020 7946 0958, 07700 900123
    "phone": (r"(?:\B\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){1,4}"
              r"|\B\([0-9]{2,4}\)[ .-]?[0-9]{3,4}[ .-]?[0-9]{3,4}"
              r"|\b(?:1[ .-])?[0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}"
              r"|\b0[0-9]{2,4}[ -][0-9]{3,4}[ -]?[0-9]{3,4})\b"),
    # 13-19 digits, contiguous or grouped 4-4-4-4 / 4-6-5 / 4-6-4 with spaces or dashes
    # (validated: Luhn checksum, issuer digit 2-6, not all one digit, not part of a longer number).
    "credit_card": (r"\b(?:[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{4}"
                    r"|[0-9]{4}[ -][0-9]{6}[ -][0-9]{4,5}"
                    r"|[0-9]{13,19})\b"),
    # dotted-quad IPv4, each octet 0-255 (validated: not inside a longer dotted number)
    "ip_address": rf"\b(?:{_OCTET}\.){{3}}{_OCTET}\b",
}
_DEFAULT_PII_PATTERNS = dict(PII_PATTERNS)
# Order in which the built-ins are applied: a matched span is replaced by its tag before the next
# type is searched, so e.g. the digits of an e-mail address are never counted as a phone number.
_BUILTIN_ORDER = ("email", "credit_card", "ip_address", "phone")
_DIGITS = frozenset("0123456789")


def _isolated(m: re.Match[str]) -> bool:
    """False when the match is part of a longer dotted or dashed number: ``1.2.3.4.5``."""
    s, (start, end) = m.string, m.span()
    if end + 1 < len(s) and s[end] in ".-" and s[end + 1] in _DIGITS:
        return False
    return not (start >= 2 and s[start - 1] in ".-" and s[start - 2] in _DIGITS)


def _isolated_group(m: re.Match[str]) -> bool:
    """Also False next to a space and another group of 3+ digits: ``0000 0000 0000 0000``."""
    s, (start, end) = m.string, m.span()
    after, before = s[end:end + 4], s[max(0, start - 4):start]
    if len(after) == 4 and after[0] == " " and all(ch in _DIGITS for ch in after[1:]):
        return False
    if len(before) == 4 and before[3] == " " and all(ch in _DIGITS for ch in before[:3]):
        return False
    return _isolated(m)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _valid_card(m: re.Match[str]) -> bool:
    digits = "".join(ch for ch in m.group(0) if ch in _DIGITS)
    return digits[0] in "23456" and len(set(digits)) > 1 and _isolated_group(m) and _luhn_ok(digits)


def _valid_phone(m: re.Match[str]) -> bool:
    n = sum(ch in _DIGITS for ch in m.group(0))
    return 9 <= n <= 15 and _isolated_group(m)


_VALIDATORS: dict[str, Callable[[re.Match[str]], bool]] = {
    "credit_card": _valid_card,
    "phone": _valid_phone,
    "ip_address": _isolated,
}


def _rows_with_digit_or_at(arr: pa.Array) -> np.ndarray:
    """Per row: holds an ASCII digit or "@" (a byte scan, much cheaper than the regex)."""
    found = np.zeros(len(arr), bool)
    data, offsets = _bytes_and_offsets(arr)
    for lo, hi in _row_chunks(offsets, max_bytes=1 << 23, max_rows=1 << 20):
        base = offsets[lo]
        chunk = data[base:offsets[hi]]
        rel = offsets[lo:hi + 1] - base
        non_empty = np.flatnonzero(rel[1:] > rel[:-1])
        if non_empty.size:
            flag = (chunk - np.uint8(0x30)) < 10
            flag |= chunk == 0x40
            found[lo + non_empty] = np.logical_or.reduceat(flag, rel[non_empty])
    return found & _valid(arr)


def _tag(name: str) -> str:
    return f"[{name.upper()}]"


@dataclass
class RedactionResult:
    """Output of :func:`redact_pii`."""

    values: pa.Array
    """The text with each match replaced by its tag (``[EMAIL]``, ``[PHONE]``, …); nulls stay null."""
    counts: dict[str, int] = field(default_factory=dict)
    """Matches redacted per PII type (every configured type is present, zero if none)."""
    rows_with_pii: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """Per row: was anything redacted."""


@functools.lru_cache(maxsize=64)
def _python_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


@functools.lru_cache(maxsize=256)
def _check_re2(name: str, pattern: str) -> None:
    probe = pa.array(["", "x"])
    try:
        matches_empty = pc.match_substring_regex(probe, pattern)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"PII pattern {name!r} is not a valid RE2 regular expression: {exc}") from None
    if matches_empty:
        raise ValueError(f"PII pattern {name!r} matches the empty string")


def _scan_pii(values: ArrayLike, patterns: Mapping[str, str] | None
              ) -> tuple[pa.Array, dict[str, int], np.ndarray]:
    """Redact built-in and extra patterns; returns (text, counts per type, matches per row)."""
    arr = _as_string_array(values)
    extras: dict[str, str] = {}
    for name, pattern in (patterns or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"PII pattern names must be non-empty strings, got {name!r}")
        if not isinstance(pattern, str):
            raise ValueError(f"PII pattern {name!r} must be a string, got {type(pattern).__name__}")
        _check_re2(name, pattern)
        extras[name] = pattern
    names = [k for k in _BUILTIN_ORDER if k in PII_PATTERNS] + [k for k in PII_PATTERNS if k not in _BUILTIN_ORDER]
    builtins = [(k, PII_PATTERNS[k]) for k in names if k not in extras]
    counts = {k: 0 for k, _ in builtins} | {k: 0 for k in extras}
    per_row = np.zeros(len(arr), np.int64)
    if len(arr) == 0:
        return arr, counts, per_row

    if builtins:
        combined = "|".join(f"(?:{p})" for _, p in builtins)
        if all(_DEFAULT_PII_PATTERNS.get(k) == p for k, p in builtins):  # each needs a digit or "@"
            candidates = _rows_with_digit_or_at(arr)
            if candidates.any():
                if candidates.mean() > 0.5:
                    candidates = _mask(pc.match_substring_regex(arr, combined)) & candidates
                else:
                    rows = np.flatnonzero(candidates)
                    candidates[rows] = _mask(pc.match_substring_regex(arr.take(pa.array(rows)), combined))
        else:
            candidates = _mask(pc.match_substring_regex(arr, combined))
        if candidates.any():
            rows = np.flatnonzero(candidates)
            compiled = [(k, _python_regex(p), _VALIDATORS.get(k), _tag(k)) for k, p in builtins]
            texts = arr.take(pa.array(rows)).to_pylist()
            changed = np.zeros(len(texts), bool)
            for r, text in enumerate(texts):
                found = 0
                for name, rx, validate, tag in compiled:
                    hits = 0

                    def _sub(m: re.Match[str], validate=validate, tag=tag) -> str:
                        nonlocal hits
                        if validate is None or validate(m):
                            hits += 1
                            return tag
                        return m.group(0)

                    text = rx.sub(_sub, text)
                    if hits:
                        counts[name] += hits
                        found += hits
                if found:
                    texts[r] = text
                    changed[r] = True
                    per_row[rows[r]] = found
            if changed.any():
                row_mask = np.zeros(len(arr), bool)
                row_mask[rows[changed]] = True
                new_values = pa.array([t for t, c in zip(texts, changed) if c], type=arr.type)
                arr = _replace_rows(arr, row_mask, new_values)

    for name, pattern in extras.items():
        hit = _mask(pc.match_substring_regex(arr, pattern))
        if not hit.any():
            continue
        sub = arr.filter(pa.array(hit))
        n_hits = np.asarray(pc.count_substring_regex(sub, pattern).to_numpy(zero_copy_only=False), np.int64)
        counts[name] += int(n_hits.sum())
        per_row[hit] += n_hits
        rewrite = _tag(name).replace("\\", "\\\\")
        arr = _replace_rows(arr, hit, pc.replace_substring_regex(sub, pattern, rewrite))
    return arr, counts, per_row


def redact_pii(values: ArrayLike, patterns: Mapping[str, str] | None = None) -> RedactionResult:
    """Replace e-mail addresses, phone numbers, card numbers and IPv4 addresses by type tags.

    ``patterns`` are extra RE2 patterns (name → regex), each replaced by ``[<NAME UPPERCASED>]``
    after the built-ins; an extra pattern named like a built-in replaces it. An invalid extra
    pattern (or one that matches the empty string) raises ``ValueError`` naming it.

    Built-ins are found with one vectorized RE2 scan; only the rows it flags are rewritten in
    Python, where card candidates must pass the Luhn check and phone candidates must have 9-15
    digits (see :data:`PII_PATTERNS`).
    """
    arr, counts, per_row = _scan_pii(values, patterns)
    return RedactionResult(values=arr, counts=counts, rows_with_pii=per_row > 0)


def count_pii(values: ArrayLike, patterns: Mapping[str, str] | None = None) -> np.ndarray:
    """Per-row number of PII matches that :func:`redact_pii` would redact (int64)."""
    return _scan_pii(values, patterns)[2]


# --------------------------------------------------------------------------------------------------
# 3. Stable ids
# --------------------------------------------------------------------------------------------------


def stable_ids(canonical: ArrayLike | Sequence[str]) -> pa.Array:
    """A 32-hex-character content id per row: ``xxh3_128`` of the row's UTF-8 bytes.

    The same string gives the same id on every machine, run and library version (xxh3 is a fixed
    algorithm; the digest is rendered big-endian, as ``xxhash.xxh3_128_hexdigest``). Null rows
    get a null id. Rows are hashed straight from the Arrow data buffer, without making Python
    strings. (Beyond 67M rows the result is ``large_string``.)
    """
    arr = _as_string_array(canonical)
    n = len(arr)
    if n == 0:
        return pa.array([], type=pa.string())
    data, offsets = _bytes_and_offsets(arr)
    bounds = offsets.tolist()
    view = memoryview(data)
    digests = b"".join(map(xxhash.xxh3_128_digest, map(view.__getitem__, map(slice, bounds[:-1], bounds[1:]))))
    text = digests.hex().encode("ascii")
    large = 32 * n >= 2**31
    out_offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int64 if large else np.int32)
    validity = None
    if arr.null_count:
        valid = _mask(arr.is_valid())
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    cls = pa.LargeStringArray if large else pa.StringArray
    return cls.from_buffers(n, pa.py_buffer(out_offsets), pa.py_buffer(text), validity, arr.null_count)


# --------------------------------------------------------------------------------------------------
# 4. MinHash and near duplicates
# --------------------------------------------------------------------------------------------------

_MAX32 = np.uint32(0xFFFFFFFF)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SHINGLE_MULT = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                          0xA0761D6478BD642F, 0xE7037ED1A0B428DB, 0x8EBC6AF09C88C6E3, 0x589965CC75374CC3],
                         dtype=np.uint64)
# Bytes that are part of words, lower-cased: ASCII letters/digits/underscore and every non-ASCII
# byte (multi-byte letters); all other ASCII bytes map to 0 and separate words.
_WORD_BYTES = np.zeros(256, np.uint8)
for _b in b"abcdefghijklmnopqrstuvwxyz0123456789_":
    _WORD_BYTES[_b] = _b
for _b in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _WORD_BYTES[_b] = _b + 32
_WORD_BYTES[0x80:] = np.arange(0x80, 0x100, dtype=np.uint8)
# the same table for two bytes at a time (little-endian pairs): half as many lookups
_WORD_PAIRS = (_WORD_BYTES[np.arange(65536) & 0xFF].astype(np.uint16)
               | (_WORD_BYTES[np.arange(65536) >> 8].astype(np.uint16) << 8))
_LEN_MASK = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [2**64 - 1], dtype=np.uint64)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array."""
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def _blank_unicode_separators(data: np.ndarray, low: np.ndarray) -> None:
    """Turn common multi-byte separators into word breaks (``low`` = 0).

    U+00A0..U+00BF (NBSP, Latin-1 punctuation), U+2000..U+206F (Unicode spaces, dashes, quotes,
    ellipsis, zero-width characters) and U+3000..U+303F (CJK spaces and punctuation).
    """
    lead = np.flatnonzero(data >= 0xC2)
    if lead.size:
        first = data[lead]
        lead = lead[(first == 0xC2) | (first == 0xE2) | (first == 0xE3)]
    lead = lead[lead + 1 < len(data)]
    if lead.size == 0:
        return
    b0, b1 = data[lead], data[lead + 1]
    two = lead[(b0 == 0xC2) & (b1 >= 0xA0)]
    three = lead[((b0 == 0xE2) & ((b1 == 0x80) | (b1 == 0x81))) | ((b0 == 0xE3) & (b1 == 0x80))]
    three = three[three + 2 < len(data)]
    for off, starts in ((0, two), (1, two), (0, three), (1, three), (2, three)):
        low[starts + off] = 0


def _chunk_shingle_keys(data: np.ndarray, offsets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit keys of the word k-shingles of each row, and the number of shingles per row.

    ``offsets`` start at 0 and index ``data``. Words are maximal runs of word bytes (see
    ``_WORD_BYTES``), hashed from their bytes by packing 8 bytes at a time into uint64 values and
    mixing; a shingle is a linear combination of its words' hashes, mixed again. Everything is a
    content hash, so keys agree across calls and chunks.
    """
    nbytes = int(offsets[-1])
    low = np.zeros(nbytes + 8, np.uint8)  # 8 bytes of padding for the 8-byte reads below
    even = nbytes & ~1
    if even:
        np.take(_WORD_PAIRS, data[:even].view("<u2"), out=low[:even].view("<u2"), mode="clip")
    if nbytes & 1:
        low[even] = _WORD_BYTES[data[even]]
    if nbytes and data.max() >= 0xC2:
        _blank_unicode_separators(data, low)
    starts, ends = _runs(low[:nbytes] != 0, offsets)
    first_word = np.searchsorted(starts, offsets)
    n_words = np.diff(first_word)
    first_word = first_word[:-1]

    # word hashes: bytes read 8 at a time through an unaligned uint64 view of the lower-cased bytes
    lengths = ends - starts
    view8 = np.ndarray((nbytes + 1,), dtype="<u8", buffer=low, strides=(1,))
    words = view8[starts] & _LEN_MASK[np.minimum(lengths, 8)]
    longer = np.flatnonzero(lengths > 8)
    step = 8
    while longer.size:
        part = view8[starts[longer] + step] & _LEN_MASK[np.minimum(lengths[longer] - step, 8)]
        words[longer] = _mix64(words[longer]) ^ part
        step += 8
        longer = longer[lengths[longer] > step]
    _mix64(words)

    # shingles: k consecutive words of a row; a row with 1..k-1 words is one shingle of all of them
    n_sh = np.where(n_words >= k, n_words - k + 1, np.minimum(n_words, 1))
    n_all = len(words)
    if n_all == 0:
        return np.empty(0, np.uint32), n_sh
    acc = words * _SHINGLE_MULT[0]
    for j in range(1, k):
        acc[:n_all - j] += words[j:] * _SHINGLE_MULT[j % len(_SHINGLE_MULT)]
    short = np.flatnonzero((n_words > 0) & (n_words < k))
    if short.size:  # their one shingle must not reach into the next row's words
        value = words[first_word[short]] * _SHINGLE_MULT[0]
        for j in range(1, k):
            has = n_words[short] > j
            value[has] += words[first_word[short[has]] + j] * _SHINGLE_MULT[j % len(_SHINGLE_MULT)]
        acc[first_word[short]] = value
    # a shingle starts at each word except the last k-1 of its row (a short row keeps its first)
    valid = np.ones(n_all, bool)
    word_end = first_word + n_words
    for j in range(1, k):
        tail = word_end - j
        valid[tail[tail > first_word]] = False
    keys = _mix64(acc[valid]) >> np.uint64(32)
    return keys.astype(np.uint32), n_sh


def _perm_multipliers(num_perm: int, seed: int) -> np.ndarray:
    # Raw PCG64 output: fixed by the algorithm, so the same on every numpy version.
    raw = np.random.default_rng(seed).bit_generator.random_raw(num_perm)
    return (raw >> np.uint64(32)).astype(np.uint32) | np.uint32(1)


def _block_minhash(keys: np.ndarray, n_sh: np.ndarray, a: np.ndarray, out: np.ndarray) -> None:
    """Per-row minimum of ``a_i * key mod 2**32`` for each multiplier ``a_i``, written into ``out``
    (all ``0xFFFFFFFF`` for rows without shingles).

    Rows are grouped by shingle count so that a block of rows is a dense (shingles x rows) matrix
    (shorter rows repeat their last shingle, which leaves the minimum unchanged); each step then
    is two numpy operations on a (num_perm x rows) tile.
    """
    num_perm = len(a)
    a_col = a[:, None]
    sh_off = np.zeros(len(n_sh) + 1, np.int64)
    np.cumsum(n_sh, out=sh_off[1:])
    order = np.argsort(n_sh, kind="stable")
    pos = int(np.searchsorted(n_sh[order], 0, side="right"))
    out[order[:pos]] = _MAX32  # rows without shingles
    block = max(512, min(8192, (1 << 21) // (4 * num_perm)))
    acc = np.empty((num_perm, block), np.uint32)
    tmp = np.empty((num_perm, block), np.uint32)
    while pos < len(order):
        rows = order[pos:pos + block]
        counts = n_sh[rows]
        depth = int(counts[-1])
        if depth > 512:  # long rows: one at a time, in slices of shingles
            for row in order[pos:]:
                lo, hi = int(sh_off[row]), int(sh_off[row + 1])
                best = np.full(num_perm, _MAX32, np.uint32)
                for s in range(lo, hi, 16384):
                    np.minimum(best, (a_col * keys[s:min(hi, s + 16384)][None, :]).min(axis=1), out=best)
                out[row] = best
            break
        width = len(rows)
        steps = np.arange(depth)[:, None]
        if counts[0] < depth:
            steps = np.minimum(steps, counts[None, :] - 1)
        matrix = keys[sh_off[rows][None, :] + steps]
        acc_w, tmp_w = acc[:, :width], tmp[:, :width]
        np.multiply(a_col, matrix[0][None, :], out=acc_w)
        for step in range(1, depth):
            np.multiply(a_col, matrix[step][None, :], out=tmp_w)
            np.minimum(acc_w, tmp_w, out=acc_w)
        out[rows] = acc_w.T
        pos += width


def minhash_signatures(texts: ArrayLike, num_perm: int = 64, shingle_words: int = 3, seed: int = 1) -> np.ndarray:
    """MinHash signatures of the word shingles of each text: ``uint32`` array of shape (n, num_perm).

    Tokens are lower-cased words (runs of letters, digits and ``_``; common Unicode punctuation and
    spaces separate words too). A shingle is ``shingle_words`` consecutive words; a text with fewer
    words is one shingle of all of them; a text without words (empty, null, only punctuation) gets
    all ``0xFFFFFFFF``.

    Words and shingles are content-hashed (no per-call vocabulary) into well-mixed 32-bit keys, and
    permutation ``i`` is the multiplicative hash ``h_i(x) = a_i * x mod 2**32`` with an odd
    ``a_i`` from ``np.random.default_rng(seed)``'s raw PCG64 stream (stable across numpy
    versions). The usual ``+ b_i`` is left out: the keys are already uniformly mixed, so it adds
    nothing measurable and would cost a third of the hot loop. A text's signature therefore depends
    only on the text and the parameters: the same in any batch, chunk, process or machine. The
    fraction of equal positions of two signatures estimates the Jaccard similarity of their
    shingle sets (standard error ``sqrt(J(1-J)/num_perm)``).

    Work is done in row chunks of a few MB, grouped by ~128k rows; groups run on up to
    :data:`THREADS` threads, which changes the speed only. Memory beyond the result stays around
    100 MB per thread.
    """
    if num_perm < 1:
        raise ValueError("num_perm must be at least 1")
    if shingle_words < 1:
        raise ValueError("shingle_words must be at least 1")
    arr = _as_string_array(texts)
    n = len(arr)
    out = np.full((n, num_perm), _MAX32, np.uint32)  # filled up front: sequential page faults are cheaper
    if n == 0:
        return out
    upper = _rows_with_changing_chars(arr, "lower")  # ASCII is lower-cased byte-wise below
    if upper.any():
        arr = _replace_rows(arr, upper, pc.utf8_lower(arr.filter(pa.array(upper))))
    a = _perm_multipliers(num_perm, seed)
    data, offsets = _bytes_and_offsets(arr)
    # groups of ~128k rows, each one pass of permutations over the shingles of its chunks
    groups: list[list[tuple[int, int]]] = [[]]
    for lo, hi in _row_chunks(offsets, max_bytes=1 << 23, max_rows=1 << 15):
        if groups[-1] and hi - groups[-1][0][0] > (1 << 17):
            groups.append([])
        groups[-1].append((lo, hi))

    def signatures_of(group: list[tuple[int, int]]) -> None:
        keys, counts = [], []
        for lo, hi in group:
            base = offsets[lo]
            k, c = _chunk_shingle_keys(data[base:offsets[hi]], offsets[lo:hi + 1] - base, shingle_words)
            keys.append(k)
            counts.append(c)
        _block_minhash(np.concatenate(keys), np.concatenate(counts), a, out[group[0][0]:group[-1][1]])

    _parallel_map(signatures_of, groups)  # groups write disjoint rows of ``out``
    return out


@functools.lru_cache(maxsize=128)
def lsh_parameters(num_perm: int, threshold: float, false_positive_weight: float = 0.1,
                   false_negative_weight: float = 0.9) -> tuple[int, int]:
    """(bands, rows per band) for LSH over ``num_perm``-long signatures at a Jaccard ``threshold``.

    A pair with similarity ``s`` shares at least one band with probability
    ``P(s) = 1 - (1 - s**r)**b``. The choice minimises the weighted sum of the false-positive area
    ``∫_0^t P(s) ds`` and the false-negative area ``∫_t^1 (1 - P(s)) ds`` over all ``b * r <=
    num_perm`` (the usual optimal-parameter search). Candidates are verified on the full
    signatures afterwards, so a false positive costs a little time while a false negative loses a
    duplicate: the default weights (0.1 / 0.9) favour recall. For 64 permutations and threshold
    0.7 this gives 12 bands of 5 rows: P(0.7) = 0.89, P(0.8) = 0.99, P(0.5) = 0.32.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    grid_fp = np.linspace(0.0, threshold, 401)
    grid_fn = np.linspace(threshold, 1.0, 401)
    best: tuple[float, int, int] | None = None
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = np.trapezoid(1.0 - (1.0 - grid_fp**rows) ** bands, grid_fp)
            fn = np.trapezoid((1.0 - grid_fn**rows) ** bands, grid_fn)
            err = false_positive_weight * fp + false_negative_weight * fn
            if best is None or err < best[0] - 1e-15:
                best = (err, bands, rows)
    assert best is not None
    return best[1], best[2]


_BAND_MULT = (np.array([0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1, 0xD3A2646C, 0xFD7046C5,
                        0xB55A4F09], dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
# A bucket of up to this many rows gives all its pairs; a bigger one (rows sharing boilerplate) pairs
# each row with the bucket's first few rows only, which bounds the work at a few pairs per row.
_ALL_PAIRS_UP_TO = 32
_FIRST_ROWS_OF_BIG_BUCKET = 4


def _band_keys(sig: np.ndarray, rows: np.ndarray | None, lo: int, hi: int) -> np.ndarray:
    """A 32-bit key per row for signature columns ``lo:hi``: a linear combination mod 2**32.

    Collisions between different bands only add candidates, which verification removes.
    """
    block = sig[:, lo:hi] if rows is None else sig[rows, lo:hi]
    width = hi - lo
    mult = np.resize(_BAND_MULT, width) * np.arange(1, 2 * width, 2, dtype=np.uint32)
    return block.astype(np.uint32, copy=False) @ mult


def _sorted_unique(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of an already sorted array (no hashing, no second sort)."""
    if ordered.size == 0:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def _bucket_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(earlier, later) local index pairs of rows sharing a key, and the largest bucket's size.

    All pairs of a bucket of up to ``_ALL_PAIRS_UP_TO`` rows; in a bigger bucket each row is paired
    with the bucket's first ``_FIRST_ROWS_OF_BIG_BUCKET`` rows before it.
    """
    empty = np.empty(0, np.int64)
    ordered = np.sort(keys)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size == 0:
        return empty, empty, 1
    shared = _sorted_unique(repeated)
    table = np.zeros(1 << 20, bool)  # a cheap pre-filter on the low 20 bits, then the exact test
    table[shared & 0xFFFFF] = True
    members = np.flatnonzero(table[keys & 0xFFFFF])
    member_keys = keys[members]
    members = members[shared[np.minimum(np.searchsorted(shared, member_keys), len(shared) - 1)] == member_keys]
    member_keys = keys[members]
    order = np.argsort(member_keys, kind="stable")
    members, member_keys = members[order], member_keys[order]  # grouped; ascending row within a group
    group_start = np.flatnonzero(np.r_[True, member_keys[1:] != member_keys[:-1]])
    group_size = np.diff(np.r_[group_start, len(members)])
    heads = np.where(group_size <= _ALL_PAIRS_UP_TO, group_size - 1, _FIRST_ROWS_OF_BIG_BUCKET)
    earlier, later = [], []
    for p in range(int(heads.max())):
        big = heads > p
        first = group_start[big] + p
        count = group_size[big] - p - 1
        total = int(count.sum())
        offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        later.append(members[np.repeat(first + 1, count) + offset])
        earlier.append(np.repeat(members[first], count))
    return np.concatenate(earlier), np.concatenate(later), int(group_size.max())


def _first_identical(sig: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of ``rows``, the position (in ``rows``) of the first one with exactly the same
    signature: its own position if none comes before."""
    width = sig.shape[1]
    high = np.empty(len(rows), np.uint32)
    low = np.empty(len(rows), np.uint32)
    m_high = np.resize(_BAND_MULT, width) * np.arange(1, 2 * width, 2, dtype=np.uint32)
    m_low = np.resize(_BAND_MULT[::-1], width) * np.arange(3, 2 * width + 2, 2, dtype=np.uint32)
    for s in range(0, len(rows), 1 << 16):
        block = sig[rows[s:s + (1 << 16)]].astype(np.uint32, copy=False)
        high[s:s + len(block)] = block @ m_high
        low[s:s + len(block)] = block @ m_low
    key = (high.astype(np.uint64) << np.uint64(32)) | low
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    leader = first[inverse.ravel()]
    copies = np.flatnonzero(leader != np.arange(len(rows)))
    for s in range(0, len(copies), 1 << 16):  # a key collision: not the same signature after all
        part = copies[s:s + (1 << 16)]
        clash = part[np.any(sig[rows[part]] != sig[rows[leader[part]]], axis=1)]
        leader[clash] = clash
    return leader


def near_duplicates(signatures: np.ndarray, threshold: float, keep: np.ndarray | None = None) -> np.ndarray:
    """For each row, the index of an earlier row it near-duplicates, else -1 (int64, length n).

    Two rows are near-duplicates when the fraction of equal signature positions (the MinHash
    estimate of their Jaccard similarity) is at least ``threshold``. Candidate pairs come from LSH
    banding (:func:`lsh_parameters`): each band of a signature is hashed to one key and rows with
    equal keys (found by sorting) become candidates, which are then verified on the full
    signatures. A duplicate points at the earliest verified earlier row that is not itself a
    duplicate. Rows where ``keep`` is False, and rows without shingles (all-max signatures), are
    ignored: never a representative, always -1.

    Work stays about linear in the rows: a bucket of more than 32 rows (rows sharing boilerplate)
    pairs each row with the bucket's first 4 rows only, and when a bucket that large shows up the
    rows with identical signatures (copies of one text) are first reduced to their first
    occurrence, which answers for all of them.
    """
    sig = np.asarray(signatures)
    if sig.ndim != 2:
        raise ValueError("signatures must be a 2-D array (rows x permutations)")
    if not np.issubdtype(sig.dtype, np.unsignedinteger):
        raise ValueError(f"signatures must be unsigned integers, got {sig.dtype}")
    n, num_perm = sig.shape
    result = np.full(n, -1, np.int64)
    if n == 0 or num_perm == 0:
        return result
    top = np.iinfo(sig.dtype).max
    active = np.ones(n, bool)
    maybe_empty = np.flatnonzero(sig[:, 0] == top)
    if maybe_empty.size:
        active[maybe_empty[np.all(sig[maybe_empty] == top, axis=1)]] = False
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (n,):
            raise ValueError(f"keep must have shape ({n},), got {keep.shape}")
        active &= keep
    lsh_parameters(num_perm, float(threshold))  # validates the threshold
    rows = None if active.all() else np.flatnonzero(active)
    if rows is not None and len(rows) < 2:
        return result
    return _resolve(sig, rows, float(threshold), result, collapse_copies=True)


def _resolve(sig: np.ndarray, rows: np.ndarray | None, threshold: float, result: np.ndarray,
             collapse_copies: bool) -> np.ndarray:
    """:func:`near_duplicates` over the given rows (None: all), writing into ``result``."""
    n, num_perm = sig.shape
    bands, per_band = lsh_parameters(num_perm, threshold)

    need = math.ceil(threshold * num_perm - 1e-9)

    def band_pairs(band: int) -> tuple[np.ndarray, int]:
        """Verified pairs of one band, as ``later * n + earlier`` codes, and its biggest bucket."""
        earlier, later, biggest = _bucket_pairs(_band_keys(sig, rows, band * per_band, (band + 1) * per_band))
        if rows is not None:
            earlier, later = rows[earlier], rows[later]
        ok = np.zeros(len(earlier), bool)
        for s in range(0, len(earlier), 1 << 16):
            e = s + (1 << 16)
            ok[s:e] = np.count_nonzero(sig[earlier[s:e]] == sig[later[s:e]], axis=1) >= need
        return later[ok] * n + earlier[ok], biggest

    first = band_pairs(0)
    if first[1] > _ALL_PAIRS_UP_TO and collapse_copies:
        return _with_copies_collapsed(sig, rows, threshold, result)
    found = [first, *_parallel_map(band_pairs, range(1, bands), parallel=n >= 1 << 16)]  # independent bands
    code = _sorted_unique(np.sort(np.concatenate([codes for codes, _ in found])))  # by later row, then earlier
    later, earlier = code // n, code % n

    is_dup = bytearray(n)
    done = -1
    for i, j in zip(later.tolist(), earlier.tolist()):
        if i != done and not is_dup[j]:
            result[i] = j
            is_dup[i] = 1
            done = i
    return result


def _with_copies_collapsed(sig: np.ndarray, rows: np.ndarray | None, threshold: float,
                           result: np.ndarray) -> np.ndarray:
    """:func:`near_duplicates` solved on the first row of each set of identical signatures.

    A later copy has the same candidates and similarities as its first occurrence, so it points
    where that one points, or at it when it is a representative itself.
    """
    rows = np.arange(len(sig)) if rows is None else rows
    leader = _first_identical(sig, rows)
    own = leader == np.arange(len(rows))
    _resolve(sig, rows[own], threshold, result, collapse_copies=False)
    copies = np.flatnonzero(~own)
    first_of = rows[leader[copies]]
    result[rows[copies]] = np.where(result[first_of] >= 0, result[first_of], first_of)
    return result


# --------------------------------------------------------------------------------------------------
# 5. Token counts
# --------------------------------------------------------------------------------------------------


def _whitespace_counts(arr: pa.Array) -> np.ndarray:
    """Whitespace-separated pieces per row, as ``str.split()`` counts them, over the raw bytes."""
    counts = np.zeros(len(arr), np.int32)
    data, offsets = _bytes_and_offsets(arr)

    def count(bounds: tuple[int, int]) -> None:
        lo, hi = bounds
        base = offsets[lo]
        rel = offsets[lo:hi + 1] - base
        chunk = data[base:offsets[hi]]
        if chunk.size == 0:
            return
        # ASCII whitespace: \t \n \v \f \r, \x1c-\x1f and the space
        space = (chunk == 0x20) | ((chunk - np.uint8(0x09)) < 5) | ((chunk - np.uint8(0x1C)) < 4)
        lead, width, cls = _multibyte_classes(chunk)
        if lead.size:  # Unicode whitespace: NEL, NBSP, U+1680, U+2000..U+200A, U+2028/9, U+202F, ...
            sel = (cls == _HSPACE) | (cls == _NEWLINE)
            lead, width = lead[sel], width[sel]
            space[lead] = True
            space[lead + 1] = True
            space[lead[width == 3] + 2] = True
        begins = np.empty(len(space), bool)  # a token starts where a non-space follows a space
        begins[0] = not space[0]
        np.greater(space[:-1], space[1:], out=begins[1:])
        first = rel[:-1][rel[1:] > rel[:-1]]  # ... or a row starts
        begins[first] = ~space[first]
        counts[lo:hi] = np.diff(np.searchsorted(np.flatnonzero(begins), rel))

    _parallel_map(count, list(_row_chunks(offsets, max_bytes=1 << 23, max_rows=1 << 16)))
    return counts


@functools.lru_cache(maxsize=4)
def _hf_tokenizer(name: str):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer  # heavy; only when a model tokenizer is asked for

    return AutoTokenizer.from_pretrained(name)


def count_tokens(texts: ArrayLike, tokenizer: str = "whitespace") -> np.ndarray:
    """Tokens per text (int32); null → 0.

    ``"whitespace"``: the number of whitespace-separated pieces (as ``str.split()`` counts them,
    Unicode spaces included), computed with numpy over the raw bytes. Anything else is a Hugging
    Face tokenizer id or local directory, loaded once per process (``AutoTokenizer.from_pretrained``)
    and applied in batches without special tokens.
    """
    arr = _as_string_array(texts)
    if len(arr) == 0:
        return np.zeros(0, np.int32)
    if tokenizer == "whitespace":
        return _whitespace_counts(arr)
    tok = _hf_tokenizer(tokenizer)
    counts = np.zeros(len(arr), np.int32)
    batch = 2048
    for lo in range(0, len(arr), batch):
        rows = [t or "" for t in arr.slice(lo, batch).to_pylist()]
        ids = tok(rows, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False,
                  verbose=False)["input_ids"]
        counts[lo:lo + len(rows)] = [len(x) for x in ids]
    return counts
