"""Is a candidate really better than its reference on the same samples, or
is the difference noise? A paired bootstrap of the mean difference."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sluice.core.evaluation.metrics.inputs import check_lengths
from sluice.core.evaluation.results import Comparison

_BOOTSTRAP_CELLS = 4_000_000  # resample indices drawn per chunk (~64 MB with the gathered values)


def paired_bootstrap(candidate: Sequence[float], baseline: Sequence[float], *, metric: str, resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> Comparison:
    """Percentile CI of mean(candidate − baseline), resampling sample indices with replacement.

    Paired: each resample draws the same indices for both models, so the
    per-sample difficulty cancels and only the difference varies — much
    tighter than comparing two independent means. Pairs with a NaN on
    either side are dropped (not measured for one model is not comparable).
    """
    check_lengths(candidate=candidate, baseline=baseline)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    c = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    differences = (c - b)[~(np.isnan(c) | np.isnan(b))]
    n = differences.size
    if n == 0:
        return Comparison(metric=metric, mean_difference=math.nan, low=math.nan, high=math.nan, samples=0,
                          confidence=confidence)
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOTSTRAP_CELLS // n)
    means = np.concatenate([differences[rng.integers(0, n, size=(min(rows, resamples - start), n))].mean(axis=1)
                            for start in range(0, resamples, rows)])
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Comparison(metric=metric, mean_difference=float(differences.mean()), low=float(low), high=float(high),
                      samples=int(n), confidence=confidence)
