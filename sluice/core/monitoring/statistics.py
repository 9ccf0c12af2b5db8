"""The drift statistics, on plain numbers and vectors (no model, no I/O), so each is tested on data whose
answer is known.

- prompt length: two-sample Kolmogorov-Smirnov (scipy) and the population stability index over the
  reference's deciles;
- embeddings: cosine distance between the mean (unit) embeddings of the two samples, with scipy's permutation
  test (how often a random split of the pooled sample is as far apart): classifier-free, and calibrated for
  any sample size;
- out of domain: the share of prompts whose nearest reference prompt is less similar than a threshold,
  beside the same share among the reference prompts themselves (leave one out), which is its baseline;
- answers: empty answers and refusals (regexes), mean feedback rating.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

PSI_EPSILON = 1e-4  # an empty bin on one side would make the PSI infinite


class LengthDrift(BaseModel):
    ks_statistic: float
    ks_pvalue: float
    psi: float
    mean_reference: float
    mean_window: float


class EmbeddingDrift(BaseModel):
    distance: float  # 1 - cosine similarity of the two mean embeddings
    pvalue: float  # permutation test
    reference_samples: int
    window_samples: int


class OutOfDomain(BaseModel):
    share: float  # of window prompts
    reference_share: float  # of reference prompts against the other reference prompts (the baseline)
    similarity_threshold: float


class AnswerSignals(BaseModel):
    answers: int
    empty_share: float
    refusal_share: float
    ratings: int
    mean_rating: float | None


def word_lengths(texts: Sequence[str]) -> np.ndarray:
    """Length in whitespace-separated words (the cleaning's default token count): the same on both sides,
    whatever tokenizer the model uses."""
    return np.array([len(text.split()) for text in texts], dtype=float)


def population_stability_index(reference: np.ndarray, window: np.ndarray, bins: int = 10) -> float:
    """PSI over the reference's quantile bins: sum((w - r) * ln(w / r)) of the bin shares."""
    quantiles = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    interior = quantiles[1:-1]
    if len(interior) == 0:  # an (almost) constant reference: below, within and above its range
        interior = np.array([quantiles[0] - 0.5, quantiles[-1] + 0.5])
    edges = np.concatenate(([-np.inf], interior, [np.inf]))
    ref_share = np.histogram(reference, edges)[0] / len(reference)
    win_share = np.histogram(window, edges)[0] / len(window)
    ref_share, win_share = np.maximum(ref_share, PSI_EPSILON), np.maximum(win_share, PSI_EPSILON)
    return float(np.sum((win_share - ref_share) * np.log(win_share / ref_share)))


def length_drift(reference: np.ndarray, window: np.ndarray) -> LengthDrift:
    from scipy.stats import ks_2samp

    if len(reference) == 0 or len(window) == 0:
        raise ValueError("length drift needs prompts on both sides")
    test = ks_2samp(reference, window)
    return LengthDrift(ks_statistic=float(test.statistic), ks_pvalue=float(test.pvalue),
                       psi=population_stability_index(reference, window), mean_reference=float(reference.mean()),
                       mean_window=float(window.mean()))


def _mean_distance(first: np.ndarray, second: np.ndarray) -> float:
    a, b = first.mean(axis=0), second.mean(axis=0)
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - float(a @ b) / denominator if denominator > 0 else 1.0


def embedding_drift(reference: np.ndarray, window: np.ndarray, permutations: int = 500,
                    seed: int = 0) -> EmbeddingDrift:
    """Distance of the mean embeddings, and its one-sided permutation p-value (scipy's permutation_test:
    (1 + as far) / (1 + permutations))."""
    from scipy.stats import permutation_test

    if len(reference) < 2 or len(window) < 2:
        raise ValueError("embedding drift needs at least 2 embeddings on each side")
    pooled = np.concatenate([reference, window])

    def distance(first: np.ndarray, second: np.ndarray) -> float:
        return _mean_distance(pooled[first], pooled[second])

    # scipy permutes 1-D observations: the samples are the rows' indices into the pooled embeddings
    test = permutation_test((np.arange(len(reference)), np.arange(len(reference), len(pooled))), distance,
                            permutation_type="independent", vectorized=False, n_resamples=permutations,
                            alternative="greater", rng=np.random.default_rng(seed))
    return EmbeddingDrift(distance=float(test.statistic), pvalue=float(test.pvalue),
                          reference_samples=len(reference), window_samples=len(window))


def out_of_domain(reference: np.ndarray, window: np.ndarray, similarity: float) -> OutOfDomain:
    """Nearest-neighbour cosine similarity (unit vectors) of each window prompt to the reference prompts."""
    if len(reference) < 2 or len(window) == 0:
        raise ValueError("out-of-domain share needs at least 2 reference embeddings and 1 window embedding")
    nearest = (window @ reference.T).max(axis=1)
    self_similarity = reference @ reference.T
    np.fill_diagonal(self_similarity, -np.inf)  # leave one out: a prompt is not its own neighbour
    reference_nearest = self_similarity.max(axis=1)
    return OutOfDomain(share=float(np.mean(nearest < similarity)),
                       reference_share=float(np.mean(reference_nearest < similarity)),
                       similarity_threshold=similarity)


def answer_signals(answers: Sequence[str], refusal_patterns: Sequence[str], ratings: Sequence[int]) -> AnswerSignals:
    """Empty answers, refusals (the shared heuristic, or one of ``refusal_patterns``), the mean rating."""
    from sluice.core.evaluation.metrics.refusal import is_refusal

    extra = re.compile("|".join(f"(?:{p})" for p in refusal_patterns), re.IGNORECASE) if refusal_patterns else None
    total = len(answers)
    empty = sum(1 for answer in answers if not answer.strip())
    refused = sum(1 for answer in answers if is_refusal(answer) or (extra is not None and extra.search(answer)))
    return AnswerSignals(answers=total, empty_share=empty / total if total else 0.0,
                         refusal_share=refused / total if total else 0.0, ratings=len(ratings),
                         mean_rating=float(np.mean(ratings)) if ratings else None)


def sample(texts: Sequence[str], size: int, seed: int) -> list[str]:
    """At most ``size`` texts, drawn without replacement (all of them when there are fewer), order kept."""
    if len(texts) <= size:
        return list(texts)
    chosen = np.sort(np.random.default_rng(seed).choice(len(texts), size=size, replace=False))
    return [texts[i] for i in chosen]
