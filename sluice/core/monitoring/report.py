"""One window's monitoring report, the decision on it, and its figures as flat metrics.

:func:`build_report` computes every figure from the window's traffic and the training prompts (embedding
at most ``sample_size`` prompts per side with the ``embed`` it is given); :func:`drifted` is the decision:
the list of crossed thresholds, empty when the window looks like the training data. A window with too few
requests gets no figures and no decision (``too_few_requests``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel

from sluice.core.config.monitoring import MonitoringConfig, MonitoringThresholds
from sluice.core.monitoring.statistics import (
    AnswerSignals,
    EmbeddingDrift,
    LengthDrift,
    OutOfDomain,
    answer_signals,
    embedding_drift,
    length_drift,
    out_of_domain,
    sample,
    word_lengths,
)
from sluice.core.monitoring.traffic import Window, WindowTraffic

Embed = Callable[[list[str]], np.ndarray]  # texts → unit-length rows (the MiniLM Embedder's embed)


class LengthHistogram(BaseModel):
    """Shares of prompts per length bin (words), for the report's plot."""

    edges: list[float]
    reference: list[float]
    window: list[float]


class MonitoringReport(BaseModel):
    window: Window
    model_name: str
    version: str
    data_commit: str
    requests: int  # answered by the served version in the window
    other_versions: int
    errors: int
    training_prompts: int
    length: LengthDrift | None = None
    embedding: EmbeddingDrift | None = None
    ood: OutOfDomain | None = None
    answers: AnswerSignals
    histogram: LengthHistogram | None = None

    @property
    def too_few_requests(self) -> bool:
        return self.length is None


def _histogram(reference: np.ndarray, window: np.ndarray, bins: int = 8) -> LengthHistogram:
    edges = np.histogram_bin_edges(np.concatenate([reference, window]), bins=bins)
    return LengthHistogram(edges=edges.round(1).tolist(),
                           reference=(np.histogram(reference, edges)[0] / len(reference)).round(4).tolist(),
                           window=(np.histogram(window, edges)[0] / len(window)).round(4).tolist())


def build_report(traffic: WindowTraffic, training: Sequence[str], ratings: Sequence[int], embed: Embed,
                 settings: MonitoringConfig, *, model_name: str, data_commit: str) -> MonitoringReport:
    """Every figure of the window against the training prompts."""
    if not training:
        raise ValueError(f"no training prompts for version {traffic.version} (data commit {data_commit}): "
                         "nothing to compare the traffic with")
    report = MonitoringReport(window=traffic.window, model_name=model_name, version=traffic.version,
                              data_commit=data_commit, requests=len(traffic.prompts),
                              other_versions=traffic.other_versions, errors=traffic.errors,
                              training_prompts=len(training),
                              answers=answer_signals(traffic.answers, settings.refusal_patterns, ratings))
    if len(traffic.prompts) < settings.thresholds.min_requests:
        return report
    reference_lengths, window_lengths = word_lengths(training), word_lengths(traffic.prompts)
    reference_sample = sample(training, settings.sample_size, settings.seed)
    window_sample = sample(traffic.prompts, settings.sample_size, settings.seed + 1)
    vectors = embed(reference_sample + window_sample)  # one batch: the model is called once
    reference_vectors, window_vectors = vectors[:len(reference_sample)], vectors[len(reference_sample):]
    return report.model_copy(update={
        "length": length_drift(reference_lengths, window_lengths),
        "embedding": embedding_drift(reference_vectors, window_vectors, settings.permutations, settings.seed),
        "ood": out_of_domain(reference_vectors, window_vectors, settings.ood_similarity),
        "histogram": _histogram(reference_lengths, window_lengths)})


def drifted(report: MonitoringReport, thresholds: MonitoringThresholds) -> list[str]:
    """Why the window counts as drifted: one reason per crossed threshold; [] when none is (or when the
    window had too few requests to tell)."""
    if report.too_few_requests:
        return []
    reasons: list[str] = []
    length, embedding, ood, answers = report.length, report.embedding, report.ood, report.answers
    assert length is not None and embedding is not None and ood is not None  # set together by build_report
    if length.ks_statistic >= thresholds.length_ks and length.ks_pvalue < thresholds.length_pvalue:
        reasons.append(f"prompt length drift: KS {length.ks_statistic:.3f} ≥ {thresholds.length_ks:g} "
                       f"(p {length.ks_pvalue:.2g}); mean {length.mean_window:.1f} words vs "
                       f"{length.mean_reference:.1f} in training")
    if embedding.distance >= thresholds.embedding_distance and embedding.pvalue < thresholds.embedding_pvalue:
        reasons.append(f"embedding drift: mean-embedding cosine distance {embedding.distance:.3f} ≥ "
                       f"{thresholds.embedding_distance:g} (permutation p {embedding.pvalue:.2g})")
    if ood.share - ood.reference_share > thresholds.ood_share_increase:
        reasons.append(f"out-of-domain prompts: {ood.share:.0%} of the window (training's own: "
                       f"{ood.reference_share:.0%}) have no training prompt with similarity ≥ "
                       f"{ood.similarity_threshold:g}")
    if answers.empty_share > thresholds.empty_share:
        reasons.append(f"empty answers: {answers.empty_share:.0%} > {thresholds.empty_share:.0%}")
    if answers.refusal_share > thresholds.refusal_share:
        reasons.append(f"refusals: {answers.refusal_share:.0%} > {thresholds.refusal_share:.0%}")
    if (thresholds.min_mean_rating is not None and answers.mean_rating is not None
            and answers.ratings >= thresholds.min_ratings and answers.mean_rating < thresholds.min_mean_rating):
        reasons.append(f"feedback: mean rating {answers.mean_rating:.2f} < {thresholds.min_mean_rating:g} "
                       f"({answers.ratings} ratings)")
    return reasons


def report_metrics(report: MonitoringReport) -> dict[str, float]:
    """The figures as MLflow metrics (``monitor.*``); a figure not measured is left out, never a zero."""
    metrics: dict[str, float] = {"monitor.requests": report.requests, "monitor.errors": report.errors,
                                 "monitor.other_versions": report.other_versions,
                                 "monitor.empty_share": report.answers.empty_share,
                                 "monitor.refusal_share": report.answers.refusal_share,
                                 "monitor.ratings": report.answers.ratings}
    if report.answers.mean_rating is not None:
        metrics["monitor.mean_rating"] = report.answers.mean_rating
    if report.length is not None:
        metrics.update({"monitor.length_ks": report.length.ks_statistic,
                        "monitor.length_ks_pvalue": report.length.ks_pvalue,
                        "monitor.length_psi": report.length.psi,
                        "monitor.length_mean_words": report.length.mean_window})
    if report.embedding is not None:
        metrics.update({"monitor.embedding_distance": report.embedding.distance,
                        "monitor.embedding_pvalue": report.embedding.pvalue})
    if report.ood is not None:
        metrics.update({"monitor.ood_share": report.ood.share,
                        "monitor.ood_share_training": report.ood.reference_share})
    return metrics


class MonitoringOutcome(BaseModel):
    """What one monitor run concluded (the flow's result)."""

    window: Window
    version: str | None  # None: nothing is served yet
    decision: str  # drift | no drift | too few requests | nothing served, or a prior run's decision
    reasons: list[str] = []
    monitoring_run: str | None = None
    event_id: str | None = None
    judged_before: bool = False  # a rerun of a window already judged: nothing computed or emitted again

    def summary(self) -> str:
        if self.version is None:
            return f"window {self.window.label()}: nothing served yet"
        again = " (judged before)" if self.judged_before else ""
        return f"version {self.version}, window {self.window.label()}: {self.decision}{again}"
