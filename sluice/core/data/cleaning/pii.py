"""PII redaction: :func:`redact_pii` and :func:`count_pii`.

E-mail addresses, phone numbers, card numbers and IPv4 addresses are replaced
by type tags (``[EMAIL]``, ``[PHONE]``, …), plus configurable extra patterns.
Most rows hold no PII: a byte scan and one vectorized RE2 scan find the few
candidate rows, and only those are rewritten in Python, where each match is
validated (Luhn check, digit counts) before it is replaced.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.core.data.cleaning.arrays import (
    ArrayLike,
    as_string_array,
    bool_mask,
    bytes_and_offsets,
    replace_rows,
    row_chunks,
    valid_rows,
)

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
    data, offsets = bytes_and_offsets(arr)
    for lo, hi in row_chunks(offsets, max_bytes=1 << 23, max_rows=1 << 20):
        base = offsets[lo]
        chunk = data[base:offsets[hi]]
        rel = offsets[lo:hi + 1] - base
        non_empty = np.flatnonzero(rel[1:] > rel[:-1])
        if non_empty.size:
            flag = (chunk - np.uint8(0x30)) < 10
            flag |= chunk == 0x40
            found[lo + non_empty] = np.logical_or.reduceat(flag, rel[non_empty])
    return found & valid_rows(arr)


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
    originals: list[tuple[str, str]] = field(default_factory=list)
    """With ``keep_originals``: every redacted match as (PII type, the text it replaced), in row order,
    for its digest (:mod:`.pii_digests`); never kept in clear (a worker hands them to its parent in an
    owner-only file, deleted once read)."""


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


def _scan_pii(values: ArrayLike, patterns: Mapping[str, str] | None, keep_originals: bool = False
              ) -> tuple[pa.Array, dict[str, int], np.ndarray, list[tuple[str, str]]]:
    """Redact built-in and extra patterns; returns (text, counts per type, matches per row, originals)."""
    arr = as_string_array(values)
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
    originals: list[tuple[str, str]] = []
    if len(arr) == 0:
        return arr, counts, per_row, originals

    if builtins:
        combined = "|".join(f"(?:{p})" for _, p in builtins)
        if all(_DEFAULT_PII_PATTERNS.get(k) == p for k, p in builtins):  # each needs a digit or "@"
            candidates = _rows_with_digit_or_at(arr)
            if candidates.any():
                if candidates.mean() > 0.5:
                    candidates = bool_mask(pc.match_substring_regex(arr, combined)) & candidates
                else:
                    rows = np.flatnonzero(candidates)
                    candidates[rows] = bool_mask(pc.match_substring_regex(arr.take(pa.array(rows)), combined))
        else:
            candidates = bool_mask(pc.match_substring_regex(arr, combined))
        if candidates.any():
            rows = np.flatnonzero(candidates)
            compiled = [(k, _python_regex(p), _VALIDATORS.get(k), _tag(k)) for k, p in builtins]
            texts = arr.take(pa.array(rows)).to_pylist()
            changed = np.zeros(len(texts), bool)
            for r, text in enumerate(texts):
                found = 0
                for name, rx, validate, tag in compiled:
                    hits = 0

                    def _sub(m: re.Match[str], validate=validate, tag=tag, name=name) -> str:
                        nonlocal hits
                        if validate is None or validate(m):
                            hits += 1
                            if keep_originals:
                                originals.append((name, m.group(0)))
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
                arr = replace_rows(arr, row_mask, new_values)

    for name, pattern in extras.items():
        hit = bool_mask(pc.match_substring_regex(arr, pattern))
        if not hit.any():
            continue
        sub = arr.filter(pa.array(hit))
        n_hits = np.asarray(pc.count_substring_regex(sub, pattern).to_numpy(zero_copy_only=False), np.int64)
        counts[name] += int(n_hits.sum())
        per_row[hit] += n_hits
        if keep_originals:
            originals += _extra_originals(name, pattern, sub)
        rewrite = _tag(name).replace("\\", "\\\\")
        arr = replace_rows(arr, hit, pc.replace_substring_regex(sub, pattern, rewrite))
    return arr, counts, per_row, originals


def _extra_originals(name: str, pattern: str, texts: pa.Array) -> list[tuple[str, str]]:
    """An extra pattern's matches, found again with Python's ``re`` (RE2 cannot return them per match);
    the rare RE2-only pattern is reported, never skipped in silence."""
    try:
        rx = _python_regex(pattern)
    except re.error as exc:
        raise ValueError(f"PII pattern {name!r} is valid RE2 but not a Python regular expression ({exc}): "
                         "its originals cannot be digested for the privacy probes; rewrite it in the syntax "
                         "both share") from None
    return [(name, m.group(0)) for text in texts.to_pylist() if text for m in rx.finditer(text)]


def redact_pii(values: ArrayLike, patterns: Mapping[str, str] | None = None, *,
               keep_originals: bool = False) -> RedactionResult:
    """Replace e-mail addresses, phone numbers, card numbers and IPv4 addresses by type tags.

    ``patterns`` are extra RE2 patterns (name → regex), each replaced by ``[<NAME UPPERCASED>]``
    after the built-ins; an extra pattern named like a built-in replaces it. An invalid extra
    pattern (or one that matches the empty string) raises ``ValueError`` naming it.
    ``keep_originals``: also return what each match replaced (cleaning digests them).

    Built-ins are found with one vectorized RE2 scan; only the rows it flags are rewritten in
    Python, where card candidates must pass the Luhn check and phone candidates must have 9-15
    digits (see :data:`PII_PATTERNS`).
    """
    arr, counts, per_row, originals = _scan_pii(values, patterns, keep_originals)
    return RedactionResult(values=arr, counts=counts, rows_with_pii=per_row > 0, originals=originals)


def count_pii(values: ArrayLike, patterns: Mapping[str, str] | None = None) -> np.ndarray:
    """Per-row number of PII matches that :func:`redact_pii` would redact (int64)."""
    return _scan_pii(values, patterns)[2]
