"""Text normalisation: :func:`normalize_text` (Unicode normal form and whitespace clean-up).

Most rows need no Unicode normalisation and no whitespace repair, so each step
first finds the rows that need work with one cheap vectorized scan (a numpy
look-up of the non-ASCII characters, one RE2 regular expression) and rewrites
only those; the whitespace rewrite itself is numpy over the raw bytes.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.core.data.cleaning.arrays import (
    ArrayLike,
    as_string_array,
    bool_mask,
    bytes_and_offsets,
    parallel_map,
    replace_rows,
    row_chunks,
    runs_within_rows,
    string_array_from_pieces,
    valid_rows,
)
from sluice.core.data.cleaning.characters import ASCII_CLASS, DROP, NEWLINE, multibyte_classes, rows_with_changing_chars

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
    arr = as_string_array(values)
    if len(arr) == 0:
        return arr
    if unicode_form is not None:
        form = unicode_form.upper()
        if form not in _UNICODE_FORMS:
            raise ValueError(f"unicode_form must be one of {_UNICODE_FORMS} or None, got {unicode_form!r}")
        todo = rows_with_changing_chars(arr, form)
        if todo.any():
            # Python's unicodedata, not pc.utf8_normalize: in pyarrow 25 the latter does not compose
            # for NFC/NFKC (apache/arrow GH-51225), e.g. "e\u0301" stays decomposed.
            rows = arr.take(pa.array(np.flatnonzero(todo))).to_pylist()
            normalized = pa.array([unicodedata.normalize(form, text) for text in rows], type=arr.type)
            arr = replace_rows(arr, todo, normalized)
    dirty = bool_mask(pc.match_substring_regex(arr, _DIRTY_COLLAPSE_RE if collapse_whitespace else _DIRTY_BASE_RE))
    if not dirty.any():
        return arr
    if collapse_whitespace and dirty.mean() > 0.5:  # cheaper than picking the rows out (clean rows pass unchanged)
        return _collapse_whitespace(arr)
    sub = arr.filter(pa.array(dirty))
    return replace_rows(arr, dirty, _collapse_whitespace(sub) if collapse_whitespace else _clean_whitespace(sub))


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
    data, offsets = bytes_and_offsets(arr)

    def clean(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = bounds
        base = offsets[lo]
        out, rel = _collapse_chunk(data[base:offsets[hi]], offsets[lo:hi + 1] - base)
        return out, np.diff(rel)

    done = parallel_map(clean, list(row_chunks(offsets, max_bytes=1 << 23, max_rows=1 << 16)))
    return string_array_from_pieces([d for d, _ in done], [n for _, n in done], arr.type,
                                    None if arr.null_count == 0 else valid_rows(arr))


def _collapse_chunk(data: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = len(data)
    if size == 0:
        return data, rel
    # bytes that may need rewriting: ASCII controls, space, DEL and the classed multi-byte characters
    flag = data <= 0x20
    flag |= data == 0x7F
    lead, width, mb_class = multibyte_classes(data)
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
    starts, ends = runs_within_rows(flag, rel)
    if starts.size == 0:
        return data, rel
    # classes of the bytes inside the runs (few, compared with the whole text)
    n_runs = len(starts)
    lengths = ends - starts
    run_of = np.repeat(np.arange(n_runs), lengths)
    where = np.arange(len(run_of)) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    run_bytes = data[where]
    cls = ASCII_CLASS[run_bytes]
    if lead.size:
        at = np.searchsorted(where, lead)
        cls[at] = mb_class
        cls[at + 1] = DROP
        cls[at[width == 3] + 2] = DROP
    cr = np.flatnonzero(run_bytes[:-1] == 0x0D)
    if cr.size:  # CR LF (in one run, so in one row) is one line break
        cr = cr[(run_bytes[cr + 1] == 0x0A) & (run_of[cr + 1] == run_of[cr])]
        cls[cr] = DROP
    n_break = np.bincount(run_of[cls == NEWLINE], minlength=n_runs)
    n_drop = np.bincount(run_of[cls == DROP], minlength=n_runs)
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
