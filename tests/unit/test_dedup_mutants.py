"""Near-duplicate detection, pinned where mutation testing (tools/mutation.py, scope "dedup")
found it unchecked: which characters separate words in MinHash signatures, and the edges of
near-duplicate matching."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sluice.core.data.cleaning.dedup import confirm_near_duplicates, jaccard, near_duplicates, shingles
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
