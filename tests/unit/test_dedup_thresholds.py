"""The near-duplicate thresholds are inclusive: a pair exactly at the threshold is a
duplicate, one step below is not — on the MinHash signatures and on the exact Jaccard
confirmation alike."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sluice.core.data.cleaning.dedup import confirm_near_duplicates, jaccard, lsh_parameters, near_duplicates

NUM_PERM = 64


def _pair_with_equal_positions(equal: int) -> np.ndarray:
    """Two signatures that agree on their first ``equal`` positions and differ on the rest.

    The equal positions come first so that the leading LSH bands are identical and the pair is
    always a candidate: what decides is the verification against the threshold.
    """
    first = np.arange(1000, 1000 + NUM_PERM, dtype=np.uint32)
    second = first.copy()
    second[equal:] += 5000
    return np.stack([first, second])


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.75, 0.9])
def test_a_pair_at_exactly_the_needed_equal_positions_is_a_near_duplicate(threshold):
    need = math.ceil(threshold * NUM_PERM - 1e-9)  # 0.7 → 45 of 64, 0.75 → exactly 48
    bands, rows = lsh_parameters(NUM_PERM, threshold)
    assert need - 1 >= rows, "the pair must share a whole band to be a candidate"
    assert near_duplicates(_pair_with_equal_positions(need), threshold).tolist() == [-1, 0]
    assert near_duplicates(_pair_with_equal_positions(need - 1), threshold).tolist() == [-1, -1]


def _texts_at(texts: list[str]):  # type: ignore[no-untyped-def]
    return lambda positions: [texts[i] for i in positions]


# 3-word shingles: 6 words give 4 shingles, 7 words 5; sharing the first 6 words is 4/5 = 0.8 exactly
SIX = "the sluice at elmbridge closes late"
SEVEN = SIX + " tonight"
EIGHT = SEVEN + " again"  # 4 of 6 shingles shared with SIX: 0.667


@pytest.mark.parametrize(("text", "other", "threshold", "same"), [
    (SIX, SEVEN, 0.8, True),                  # Jaccard exactly 0.8 at threshold 0.8: confirmed
    (SIX, EIGHT, 0.8, False),                 # 4/6 just below: not
    ("a b c d e", "a b c x e", 0.2, True),    # 1 of 5 shingles: exactly 0.2
    ("a b c d e", "a b c x e", 0.21, False),
])
def test_the_exact_jaccard_confirmation_includes_the_threshold(text, other, threshold, same):
    if same:  # the pair sits on the edge (the same float), not above it
        assert jaccard(text, other, 3) == threshold
    representative = np.array([-1, 0])
    confirmed = confirm_near_duplicates(representative, _texts_at([text, other]), threshold, 3)
    assert confirmed.tolist() == [False, same]
