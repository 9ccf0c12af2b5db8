"""Which characters the raw UTF-8 bytes of a string array hold, found with numpy.

* Byte-level classes (normal, horizontal space, line break, dropped) of the
  ASCII bytes and of the few multi-byte characters whitespace handling cares
  about: shared by whitespace clean-up and whitespace token counting.
* :func:`rows_with_changing_chars`: the rows holding a character that a Unicode
  normal form or lower-casing may change, so that only those rows are
  rewritten (most rows need neither).
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
import pyarrow as pa

from sluice.core.data.cleaning.arrays import bytes_and_offsets, row_chunks, valid_rows

# The class of a byte: what whitespace clean-up does with it.
NORMAL, HSPACE, NEWLINE, DROP = 0, 1, 2, 3
# ASCII bytes: space and tab are horizontal space; LF, VT, FF, CR line breaks; other C0 controls and
# DEL are dropped. Bytes >= 0x80 are normal here; the multi-byte characters below are found apart.
ASCII_CLASS = np.zeros(256, np.uint8)
ASCII_CLASS[[0x09, 0x20]] = HSPACE
ASCII_CLASS[[0x0A, 0x0B, 0x0C, 0x0D]] = NEWLINE
ASCII_CLASS[[*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F]] = DROP
# Multi-byte characters with a class: C1 controls (dropped; NEL is a line break), NBSP and the other
# Unicode space separators (horizontal space), LINE/PARAGRAPH SEPARATOR (line break), zero-width
# space/non-joiner/joiner, word joiner and BOM (dropped).
_MULTIBYTE_CLASS = {cp: DROP for cp in range(0x80, 0xA0)}
_MULTIBYTE_CLASS.update({0x85: NEWLINE, 0xA0: HSPACE, 0x1680: HSPACE, 0x2028: NEWLINE, 0x2029: NEWLINE,
                         0x202F: HSPACE, 0x205F: HSPACE, 0x3000: HSPACE, 0x200B: DROP, 0x200C: DROP,
                         0x200D: DROP, 0x2060: DROP, 0xFEFF: DROP})
_MULTIBYTE_CLASS.update({cp: HSPACE for cp in range(0x2000, 0x200B)})
_MB_CODEPOINTS = np.array(sorted(_MULTIBYTE_CLASS), dtype=np.int64)
_MB_CLASSES = np.array([_MULTIBYTE_CLASS[cp] for cp in sorted(_MULTIBYTE_CLASS)], dtype=np.uint8)
_MB_LEADS = (0xC2, 0xE1, 0xE2, 0xE3, 0xEF)  # first UTF-8 byte of every code point above


def multibyte_classes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def rows_with_changing_chars(arr: pa.Array, kind: str) -> np.ndarray:
    """Per row: holds a character that ``kind`` may change (see :func:`_changing_ranges`).

    Decodes only the non-ASCII characters, with numpy, and looks their code points up in the ranges.
    """
    found = np.zeros(len(arr), bool)
    data, offsets = bytes_and_offsets(arr)
    first, last = _changing_ranges(kind)
    for lo, hi in row_chunks(offsets, max_bytes=1 << 24, max_rows=1 << 20):
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
    return found & valid_rows(arr)
