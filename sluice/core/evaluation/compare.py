"""Candidate against reference, per metric both have: the paired bootstrap
of their per-sample scores on the same eval rows."""

from __future__ import annotations

from sluice.core.config import EvaluationConfig
from sluice.core.evaluation.metrics.bootstrap import paired_bootstrap
from sluice.core.evaluation.record import load_scores
from sluice.core.evaluation.results import Comparison, EvaluatedModel


def compare_models(candidate: EvaluatedModel, reference: EvaluatedModel,
                   settings: EvaluationConfig) -> dict[str, Comparison]:
    if candidate.data_commit != reference.data_commit or candidate.samples != reference.samples:
        raise ValueError(f"cannot compare {candidate.label} and {reference.label}: evaluated on different data "
                         f"({candidate.data_commit[:12]}/{candidate.samples} vs "
                         f"{reference.data_commit[:12]}/{reference.samples} samples)")
    ours, theirs = load_scores(candidate), load_scores(reference)
    return {metric: paired_bootstrap(ours[metric], theirs[metric], metric=metric,
                                     resamples=settings.bootstrap_resamples, confidence=settings.confidence,
                                     seed=settings.seed)
            for metric in sorted(set(ours) & set(theirs))}
