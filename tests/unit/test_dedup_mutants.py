"""Near-duplicate detection, pinned where mutation testing (tools/mutation.py, scope "dedup")
found it unchecked: which characters separate words in MinHash signatures, and the edges of
near-duplicate matching."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from sluice.core.data.cleaning.dedup import (
    _hex_ids,
    confirm_near_duplicates,
    jaccard,
    near_duplicates,
    needs_large_offsets,
    shingles,
    stable_ids,
)
from sluice.core.data.cleaning.minhash import minhash_signatures

TEXT = "alpha beta gamma delta"

# U+00A0..U+00BF, U+2000..U+206F and U+3000..U+303F separate words, like an ASCII space
SEPARATORS = ["\u00a0", "\u00ab", "\u00bf", "\u2000", "\u2014", "\u201c", "\u2026", "\u200b", "\u205f", "\u3000",
              "\u3001", "\u300c", "\u303f"]
# letters whose UTF-8 bytes start like a separator's, or next to one, are part of words
WORD_CHARACTERS = ["\u0080", "\u00c0", "\u00e9", "\u0100", "\u2100", "\u20ac", "\u2801", "\u3041", "\u3800", "\u4e00"]


def _signature(text: str, before: list[str] | None = None) -> np.ndarray:
    """The signature of ``text`` as the last row of a batch (its bytes end the buffer)."""
    return minhash_signatures(pa.array([*(before or []), text]))[-1]


@pytest.mark.parametrize("separator", SEPARATORS, ids=[f"U+{ord(s):04X}" for s in SEPARATORS])
def test_unicode_spaces_and_punctuation_separate_words(separator: str) -> None:
    expected = _signature(TEXT)
    assert (_signature(f"alpha{separator}beta gamma delta") == expected).all()
    assert (_signature(f"alpha beta gamma delta{separator}", before=["x"]) == expected).all()  # at the very end
    assert (_signature(f"{separator}alpha beta gamma delta") == expected).all()


@pytest.mark.parametrize("letter", WORD_CHARACTERS, ids=[f"U+{ord(c):04X}" for c in WORD_CHARACTERS])
def test_other_characters_are_part_of_words(letter: str) -> None:
    joined = _signature(f"alpha{letter}beta gamma delta")
    assert not (joined == _signature(TEXT)).all()
    assert (joined == _signature(f"alpha{letter}beta gamma  delta")).all()  # the same words: the same signature


# --- near duplicates among many copies (the collapsed path) -------------------------


def _near_copy(base: np.ndarray, i: int) -> np.ndarray:
    """``base`` with its last position changed: 63 of 64 positions equal, every band but the last shared."""
    row = base.copy()
    row[-1] = np.uint32(1_000_000 + i)
    return row


BASE = np.random.default_rng(0).integers(0, 2**32 - 1, 64, dtype=np.uint32)


def test_forty_distinct_near_copies_all_point_at_the_first() -> None:
    # a band bucket of more than 32 rows that are not identical: resolved once, without collapsing again
    sig = np.stack([BASE] + [_near_copy(BASE, i) for i in range(1, 40)])
    assert near_duplicates(sig, 0.7).tolist() == [-1] + [0] * 39


def test_copies_of_a_near_duplicate_point_at_its_representative_not_at_the_first_copy() -> None:
    sig = np.stack([BASE] + [_near_copy(BASE, 1)] * 40)  # row 0, then 40 copies of a near-copy of it
    assert near_duplicates(sig, 0.7).tolist() == [-1] + [0] * 40


def test_many_identical_copies_point_at_the_first() -> None:
    other = np.random.default_rng(1).integers(0, 2**32 - 1, 64, dtype=np.uint32)
    sig = np.stack([other] + [BASE] * 40)
    assert near_duplicates(sig, 0.7).tolist() == [-1, -1] + [1] * 39


# --- exact confirmation ------------------------------------------------------------


def test_a_text_of_exactly_the_shingle_size_is_one_shingle() -> None:
    assert shingles("A b, c", 3) == {("a", "b", "c")}
    assert jaccard("a b c", "a b c d", 3) == 0.5  # {abc} against {abc, bcd}


def test_a_pair_exactly_at_the_threshold_is_confirmed() -> None:
    texts = ["a b c d", "a b c", "x y z"]
    confirmed = confirm_near_duplicates(np.array([-1, 0, 0]), lambda rows: [texts[i] for i in rows], 0.5, 3)
    assert confirmed.tolist() == [False, True, False]


def test_a_reader_that_returns_too_few_texts_is_an_error() -> None:
    with pytest.raises(ValueError):
        confirm_near_duplicates(np.array([-1, 0]), lambda rows: ["a b c"] * (len(rows) - 1), 0.5, 3)


# --- which rows count as copies of one text (the collapsed path's grouping) --------------------


def _rows_like(base: np.ndarray, equal: slice, fill: int) -> np.ndarray:
    """A signature equal to ``base`` on the ``equal`` positions and unlike every other row elsewhere."""
    row = np.arange(fill, fill + len(base), dtype=np.uint32)
    row[equal] = base[equal]
    return row


def _copies_of_a_near_duplicate() -> np.ndarray:
    """64 permutations at 0.7: 12 bands of 5 positions (0..59), 45 equal positions needed.

    P (row 8)'s near duplicate L (positions 0..44 equal: bands 0..8) comes with 39 copies. Every
    band bucket that holds P and L holds 4 earlier rows that are near neither (F: bands 0..7, G:
    bands 1..8, 40 equal positions), and a bucket of more than 32 rows pairs a row with its first
    4 rows only: L meets P only when its copies are set aside first, as one row.
    """
    p = np.arange(1000, 1064, dtype=np.uint32)
    fs = [_rows_like(p, slice(0, 40), 10_000 * (i + 1)) for i in range(4)]
    gs = [_rows_like(p, slice(5, 45), 100_000 * (i + 1)) for i in range(4)]
    near = _rows_like(p, slice(0, 45), 5_000_000)
    return np.stack([*fs, *gs, p] + [near] * 40)


def test_copies_reach_their_representative_through_their_first_occurrence() -> None:
    assert near_duplicates(_copies_of_a_near_duplicate(), 0.7).tolist() == [-1] * 9 + [8] * 40


def test_copies_beyond_the_first_65536_rows_are_found_too() -> None:
    # copies are keyed in blocks of 65,536 rows: the same rows after a first block of unrelated ones
    unrelated = np.random.default_rng(4).integers(0, 2**32, (1 << 16, 64), dtype=np.uint64).astype(np.uint32)
    result = near_duplicates(np.concatenate([unrelated, _copies_of_a_near_duplicate()]), 0.7)
    assert (result[: 1 << 16] == -1).all()
    assert result[1 << 16:].tolist() == [-1] * 9 + [(1 << 16) + 8] * 40


def _colliding_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two signatures that differ in every position but whose 64-bit copy keys are equal.

    Built against the key that groups candidate copies (two linear combinations mod 2**32 with
    the multipliers of ``dedup._first_identical``): solved for the first three positions.
    """
    from sluice.core.data.cleaning.dedup import _BAND_MULT

    mod = 1 << 32
    odd = np.arange(1, 128, 2, dtype=np.uint32)
    a = [int(v) for v in np.resize(_BAND_MULT, 64) * odd]
    b = [int(v) for v in np.resize(_BAND_MULT[::-1], 64) * (odd + np.uint32(2))]
    d = [0, 0, 0] + [int(v) for v in np.random.default_rng(7).integers(1, mod, 61)]
    a0inv = pow(a[0], -1, mod)
    rest_a = sum(x * y for x, y in zip(a[3:], d[3:], strict=True)) % mod
    rest_b = sum(x * y for x, y in zip(b[3:], d[3:], strict=True)) % mod
    c1, c2 = (b[1] - b[0] * a0inv * a[1]) % mod, (b[2] - b[0] * a0inv * a[2]) % mod
    shift = (c1 & -c1).bit_length() - 1  # c1 = 2**shift * odd
    for d2 in range(1, 10_000):
        r = (-rest_b + b[0] * a0inv * rest_a - c2 * d2) % mod
        if r % (1 << shift) == 0:
            d1 = (r >> shift) * pow(c1 >> shift, -1, mod) % mod
            d0 = a0inv * (-rest_a - a[1] * d1 - a[2] * d2) % mod
            if d0 and d1:
                d[:3] = [d0, d1, d2]
                break
    first = np.arange(7000, 7064, dtype=np.uint32)  # unlike the rows of _copies_of_a_near_duplicate
    second = ((first.astype(np.uint64) + np.array(d, dtype=np.uint64)) % mod).astype(np.uint32)
    for m in (a, b):  # the construction itself: equal keys
        assert sum(int(x) * y for x, y in zip(first, m)) % mod == sum(int(x) * y for x, y in zip(second, m)) % mod
    return first, second


@pytest.mark.parametrize("half", ["high", "low"])
def test_a_row_matching_half_of_the_copies_key_does_not_split_them(half: str) -> None:
    # X (row 0) agrees with one 32-bit half of L's copy key only (solved for X's first position):
    # L's copies are still set aside as one row, so L still meets P (see the test above)
    from sluice.core.data.cleaning.dedup import _BAND_MULT

    mod = 1 << 32
    mult = _BAND_MULT if half == "high" else _BAND_MULT[::-1]
    first_odd = 1 if half == "high" else 3
    m = [int(v) for v in np.resize(mult, 64) * np.arange(first_odd, first_odd + 128, 2, dtype=np.uint32)]
    rows = _copies_of_a_near_duplicate()
    target = sum(int(v) * k for v, k in zip(rows[-1], m, strict=True)) % mod
    x = np.random.default_rng(9).integers(0, mod, 64, dtype=np.uint64)
    x[0] = (target - sum(int(v) * k for v, k in zip(x[1:], m[1:], strict=True))) * pow(m[0], -1, mod) % mod
    assert sum(int(v) * k for v, k in zip(x, m, strict=True)) % mod == target
    sig = np.concatenate([x.astype(np.uint32)[None, :], rows])
    assert near_duplicates(sig, 0.7).tolist() == [-1] * 10 + [9] * 40


@pytest.mark.parametrize("copies", [40, 70_000])  # also more than one block of 65,536 copies to check
def test_rows_whose_copy_keys_collide_are_not_copies(copies: int) -> None:
    first, second = _colliding_pair()
    assert (first != second).all()
    sig = np.concatenate([first[None, :], np.broadcast_to(second, (copies, 64))])  # a bucket > 32: collapsed
    assert near_duplicates(sig, 0.7).tolist() == [-1, -1] + [1] * (copies - 1)


def test_a_collision_elsewhere_leaves_other_copies_set_aside() -> None:
    first, second = _colliding_pair()
    rows = _copies_of_a_near_duplicate()
    sig = np.concatenate([np.stack([first, second]), rows])
    assert near_duplicates(sig, 0.7).tolist() == [-1, -1] + [-1] * 9 + [10] * 40


# --- content ids ----------------------------------------------------------------------------


def test_ids_are_a_string_column_with_nulls_exactly_where_the_rows_are_null() -> None:
    rows = [None, "a", None, None, "b", "c", None, "d", "e", None]  # a validity bitmap of two bytes
    ids = stable_ids(pa.array(rows))
    assert ids.type == pa.string()  # large_string only beyond 67M rows
    assert ids.to_pylist() == [None if r is None else xxhash.xxh3_128_hexdigest(r.encode()) for r in rows]
    assert ids.null_count == 5
    assert stable_ids([]).type == pa.string()


def test_ids_need_64_bit_offsets_from_67_108_864_rows_on() -> None:
    # the last offset, 32 * rows, must fit int32; checked by arithmetic, not by hashing 67M rows
    assert not needs_large_offsets(2**26 - 1)
    assert needs_large_offsets(2**26)
    assert not needs_large_offsets(2**31 - 1, width=1)
    assert needs_large_offsets(2**31, width=1)


@pytest.mark.parametrize("large", [False, True])
def test_ids_laid_out_with_either_offset_width_read_back_the_same(large: bool) -> None:
    rows = ["a", None, "b"]
    digests = [xxhash.xxh3_128_hexdigest(r.encode()) if r is not None else "0" * 32 for r in rows]
    validity = pa.py_buffer(np.packbits(np.array([True, False, True]), bitorder="little"))
    ids = _hex_ids("".join(digests).encode("ascii"), 3, validity, 1, large=large)
    assert ids.type == (pa.large_string() if large else pa.string())
    assert ids.to_pylist() == [digests[0], None, digests[2]]
    ids.validate(full=True)


# --- the bound on pairs from one bucket -----------------------------------------------------


def _bucket_of(fillers: int) -> np.ndarray:
    """``fillers`` rows sharing bands 0..7 with P and as many sharing bands 1..8 (each only 40 of 64
    positions: near nothing), then P, then L (P's near duplicate: bands 0..8, 45 positions)."""
    p = np.arange(1000, 1064, dtype=np.uint32)
    fs = [_rows_like(p, slice(0, 40), 10_000 * (i + 1)) for i in range(fillers)]
    gs = [_rows_like(p, slice(5, 45), 10_000_000 + 10_000 * i) for i in range(fillers)]
    return np.stack([*fs, *gs, p, _rows_like(p, slice(0, 45), 5_000_000)])


def test_a_bucket_of_32_rows_gives_all_its_pairs() -> None:
    # bands 0 and 8 hold 30 fillers, P and L: 32 rows, all paired, so L meets P there (bands 1..7
    # hold 62 rows and pair L with 4 fillers only)
    assert near_duplicates(_bucket_of(30), 0.7).tolist() == [-1] * 61 + [60]


def test_a_bucket_of_33_rows_pairs_each_row_with_its_first_4_only() -> None:
    # the documented bound on work: here L meets only fillers, and P's likeness is not seen
    assert near_duplicates(_bucket_of(31), 0.7).tolist() == [-1] * 64


def test_copies_that_crowd_a_later_band_are_reduced_before_pairing() -> None:
    """32 copies of A fill band 0's bucket exactly (no reduction needed there) and, with B and C,
    band 1's past 32. B and C are near each other (53 of 64 positions) but share only band 1 with
    anything; with the copies reduced to one, band 1's bucket is 3 rows and B meets C."""
    a = np.arange(1000, 1064, dtype=np.uint32)
    b = np.arange(50_000, 50_064, dtype=np.uint32)
    b[5:10] = a[5:10]
    c = b.copy()
    for band in (0, *range(2, 12)):
        c[band * 5] = 90_000 + band
    result = near_duplicates(np.stack([*[a] * 32, b, c]), 0.7)
    assert result.tolist() == [-1] + [0] * 31 + [-1, 32]
    keep = np.ones(34, bool)
    keep[0] = False  # a row left out stays out when the copies are reduced: row 1 represents them
    result = near_duplicates(np.stack([*[a] * 32, b, c]), 0.7, keep=keep)
    assert result.tolist() == [-1, -1] + [1] * 30 + [-1, 32]


# --- what near_duplicates accepts ---------------------------------------------------------


def test_bad_signatures_and_keep_are_refused_saying_what_was_given() -> None:
    sig = np.zeros((3, 8), np.uint32)
    with pytest.raises(ValueError, match=r"^signatures must be a 2-D array \(rows x permutations\)$"):
        near_duplicates(sig[0], 0.7)
    with pytest.raises(ValueError, match=r"^signatures must be unsigned integers, got int64$"):
        near_duplicates(sig.astype(np.int64), 0.7)
    with pytest.raises(ValueError, match=r"^keep must have shape \(3,\), got \(2,\)$"):
        near_duplicates(sig, 0.7, keep=np.ones(2, bool))
    with pytest.raises(ValueError, match=r"^threshold must be in \(0, 1\]$"):
        near_duplicates(sig, 1.5)


def test_no_rows_or_no_positions_give_no_duplicates() -> None:
    assert near_duplicates(np.zeros((0, 64), np.uint32), 0.7).tolist() == []
    assert near_duplicates(np.zeros((3, 0), np.uint32), 0.7).tolist() == [-1, -1, -1]


def test_two_rows_left_by_keep_are_still_compared() -> None:
    sig = np.stack([BASE, BASE, _near_copy(BASE, 1)])
    assert near_duplicates(sig, 0.7, keep=[0, 1, 0]).tolist() == [-1, -1, -1]
    assert near_duplicates(sig, 0.7, keep=[1, 0, 1]).tolist() == [-1, -1, 0]  # 0/1 flags work as booleans


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64])
def test_rows_without_shingles_are_ignored_at_any_width(dtype: type) -> None:
    top = np.iinfo(dtype).max
    sig = np.full((4, 16), top, dtype)
    sig[2:, 1] = 3  # rows 2 and 3: equal, and not all at the maximum
    assert near_duplicates(sig, 0.7).tolist() == [-1, -1, -1, 2]


@pytest.mark.parametrize("band", [0, 1, 11])
def test_near_duplicates_that_share_a_single_band_are_found(band: int) -> None:
    # 64 permutations at 0.7: 12 bands of 5 positions; one change in every other band leaves
    # 53 of 64 positions equal (45 needed), so the one band shared is the only way to meet
    rng = np.random.default_rng(band)
    first, second = rng.integers(0, 2**32, (2, 64), dtype=np.uint64).astype(np.uint32)

    def changed(row: np.ndarray) -> np.ndarray:
        out = row.copy()
        out[[5 * b for b in range(12) if b != band]] += np.uint32(1)
        return out

    sig = np.stack([first, changed(first), second, changed(second)])  # two pairs, two keys in the band
    assert near_duplicates(sig, 0.7).tolist() == [-1, 0, -1, 2]


def test_a_row_near_two_representatives_points_at_the_earlier() -> None:
    a = np.arange(1000, 1064, dtype=np.uint32)
    b = a.copy()
    b[30:] += 5000  # 30 of 64 positions equal to a: not a near duplicate of it
    c = np.concatenate([a[:45], b[45:]])  # 45 positions equal to a, 49 to b
    assert near_duplicates(np.stack([a, b, c]), 0.7).tolist() == [-1, -1, 0]


def test_one_permutation_and_all_max_rows_under_keep() -> None:
    assert near_duplicates(np.array([[5], [5], [7]], np.uint32), 0.7).tolist() == [-1, 0, -1]
    top = np.full((2, 8), np.iinfo(np.uint32).max, np.uint32)  # rows without shingles, kept or not
    assert near_duplicates(top, 0.7, keep=np.ones(2, bool)).tolist() == [-1, -1]
