"""Finding duplicates: content ids for exact ones, MinHash and LSH for near ones.

* :func:`stable_ids` — a content id per row (xxh3-128 hex digest): equal ids,
  equal content.
* :func:`near_duplicates` — for each row, an earlier row whose MinHash
  signature (:mod:`sluice.core.data.cleaning.minhash`) is about as similar as
  a Jaccard ``threshold``, found by LSH banding (:func:`lsh_parameters`).
* :func:`confirm_near_duplicates` — those pairs checked on the exact Jaccard
  similarity of their word shingles (:func:`jaccard`), since MinHash only
  estimates it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import xxhash

from sluice.core.data.cleaning.arrays import ArrayLike, as_string_array, bool_mask, bytes_and_offsets, parallel_map


def stable_ids(canonical: ArrayLike | Sequence[str]) -> pa.Array:
    """A 32-hex-character content id per row: ``xxh3_128`` of the row's UTF-8 bytes.

    The same string gives the same id on every machine, run and library version (xxh3 is a fixed
    algorithm; the digest is rendered big-endian, as ``xxhash.xxh3_128_hexdigest``). Null rows
    get a null id. Rows are hashed straight from the Arrow data buffer, without making Python
    strings. (Beyond 67M rows the result is ``large_string``.)
    """
    arr = as_string_array(canonical)
    n = len(arr)
    if n == 0:
        return pa.array([], type=pa.string())
    data, offsets = bytes_and_offsets(arr)
    bounds = offsets.tolist()
    view = memoryview(data)
    digests = b"".join(map(xxhash.xxh3_128_digest, map(view.__getitem__, map(slice, bounds[:-1], bounds[1:]))))
    validity = None
    if arr.null_count:
        validity = pa.py_buffer(np.packbits(bool_mask(arr.is_valid()), bitorder="little"))
    return _hex_ids(digests.hex().encode("ascii"), n, validity, arr.null_count, large=needs_large_offsets(n))


def needs_large_offsets(rows: int, width: int = 32) -> bool:
    """Whether ``rows`` strings of ``width`` bytes need 64-bit offsets: Arrow's ``string`` holds
    int32 offsets, so its last offset ``rows * width`` must stay below 2**31 (67,108,864 ids of 32)."""
    return rows * width >= 2**31


def _hex_ids(text: bytes, n: int, validity: pa.Buffer | None, null_count: int, *, large: bool) -> pa.Array:
    """``n`` ids of 32 characters laid end to end in ``text``, as ``string`` or ``large_string``."""
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int64 if large else np.int32)
    cls = pa.LargeStringArray if large else pa.StringArray
    return cls.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text), validity, null_count)


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
    if first[1] > _ALL_PAIRS_UP_TO and collapse_copies:  # seen in band 0: the other bands need not be paired
        return _with_copies_collapsed(sig, rows, threshold, result)
    found = [first, *parallel_map(band_pairs, range(1, bands), parallel=n >= 1 << 16)]  # independent bands
    if collapse_copies and max(biggest for _, biggest in found) > _ALL_PAIRS_UP_TO:
        # a later band is that large: copies reduced, its bucket may be small enough to pair in full
        return _with_copies_collapsed(sig, rows, threshold, result)
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


def shingles(text: str, size: int) -> set[tuple[str, ...]]:
    """The lower-cased word ``size``-shingles of a text (a shorter text is one shingle of all its words)."""
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + size]) for i in range(max(1, len(words) - size + 1))} if words else set()


def jaccard(a: str, b: str, size: int) -> float:
    """The exact Jaccard similarity of two texts' word shingles (0 when neither has a word)."""
    first, second = shingles(a, size), shingles(b, size)
    union = first | second
    return len(first & second) / len(union) if union else 0.0


def confirm_near_duplicates(representative: np.ndarray, texts_at: Callable[[np.ndarray], list[str]],
                            threshold: float, shingle_words: int) -> np.ndarray:
    """Per row: a near duplicate found by :func:`near_duplicates` (``representative``) whose texts
    really are that similar, on the exact :func:`jaccard` of their words (MinHash only estimates it).

    ``texts_at(positions)`` gives the texts of rows: it is asked once, for the candidates followed
    by their representatives, and not at all when there is no candidate (reading texts is slow).
    """
    near = representative >= 0
    candidates = np.nonzero(near)[0]
    if len(candidates):
        texts = texts_at(np.concatenate([candidates, representative[candidates]]))
        pairs = zip(texts[: len(candidates)], texts[len(candidates):], strict=True)
        confirmed = np.array([jaccard(a, b, shingle_words) >= threshold for a, b in pairs])
        near[candidates[~confirmed]] = False
    return near
