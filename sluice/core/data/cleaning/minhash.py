"""MinHash signatures of the word shingles of texts: :func:`minhash_signatures`.

Word tokenisation, hashing and MinHash run in numpy over the raw UTF-8 bytes,
in row chunks of a few MB (memory stays bounded), on up to
:data:`~sluice.core.data.cleaning.arrays.THREADS` threads. A signature depends
only on its text and the parameters; :mod:`sluice.core.data.cleaning.dedup`
compares them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.core.data.cleaning.arrays import (
    ArrayLike,
    as_string_array,
    bytes_and_offsets,
    parallel_map,
    replace_rows,
    row_chunks,
    runs_within_rows,
)
from sluice.core.data.cleaning.characters import rows_with_changing_chars

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
    starts, ends = runs_within_rows(low[:nbytes] != 0, offsets)
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
    :data:`~sluice.core.data.cleaning.arrays.THREADS` threads, which changes the speed only.
    Memory beyond the result stays around 100 MB per thread.
    """
    if num_perm < 1:
        raise ValueError("num_perm must be at least 1")
    if shingle_words < 1:
        raise ValueError("shingle_words must be at least 1")
    arr = as_string_array(texts)
    n = len(arr)
    out = np.full((n, num_perm), _MAX32, np.uint32)  # filled up front: sequential page faults are cheaper
    if n == 0:
        return out
    upper = rows_with_changing_chars(arr, "lower")  # ASCII is lower-cased byte-wise below
    if upper.any():
        arr = replace_rows(arr, upper, pc.utf8_lower(arr.filter(pa.array(upper))))
    a = _perm_multipliers(num_perm, seed)
    data, offsets = bytes_and_offsets(arr)
    # groups of ~128k rows, each one pass of permutations over the shingles of its chunks
    groups: list[list[tuple[int, int]]] = [[]]
    for lo, hi in row_chunks(offsets, max_bytes=1 << 23, max_rows=1 << 15):
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

    parallel_map(signatures_of, groups)  # groups write disjoint rows of ``out``
    return out
