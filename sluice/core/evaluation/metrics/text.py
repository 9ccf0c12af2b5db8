"""Metrics without an LLM, per sample and in bulk: ROUGE, BLEU, string
similarity, exact match (RAGAS's definitions) and MiniLM semantic similarity;
and their aggregation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sluice.core.evaluation.metrics.embeddings import Embedder, default_embedder
from sluice.core.evaluation.metrics.inputs import check_lengths, check_metrics, check_strings

METRICS_WITHOUT_LLM = ("rouge1", "rouge2", "rougeL", "bleu", "string_similarity", "exact_match",
                       "semantic_similarity")


def score_without_llm(predictions: list[str], references: list[str], metrics: Sequence[str], *,
                      embedder: Embedder | None = None) -> dict[str, list[float]]:
    """Per-sample scores for each requested metric, in input order.

    * ``rouge1``/``rouge2``/``rougeL``: F-measure from ``rouge_score`` with
      the Porter stemmer on, as RAGAS's ``RougeScore`` does (so "closes" and
      "closed" match). Scores in [0, 1].
    * ``bleu``: RAGAS's ``BleuScore`` (see :func:`bleu_scores` for what that
      really measures: the response's first sentence against the closest
      reference sentence). In [0, 1]; 0 when that sentence has under four tokens.
    * ``string_similarity``: RAGAS's ``NonLLMStringSimilarity`` (1 −
      normalised Levenshtein distance). In [0, 1].
    * ``exact_match``: RAGAS's ``ExactMatch``: 1.0 for identical strings, else 0.0.
    * ``semantic_similarity``: RAGAS's ``SemanticSimilarity`` (no threshold)
      with MiniLM: the cosine of the two embeddings. RAGAS does not clip it
      and neither do we below: unrelated texts can score slightly under 0.

    BLEU and cosine are capped at 1.0: for identical texts both come out a
    few ulps above 1 (RAGAS reports 1.0000000000000004), which would trip
    any ``<= 1`` check downstream; that cap is the only departure from RAGAS.

    ``embedder`` is used only for ``semantic_similarity``; without one the
    process-wide :func:`default_embedder` is loaded on first use.
    """
    wanted = check_metrics(metrics, METRICS_WITHOUT_LLM)
    check_lengths(predictions=predictions, references=references)
    check_strings("predictions", predictions)
    check_strings("references", references)
    scores: dict[str, list[float]] = {}
    rouge = [m for m in wanted if m.startswith("rouge")]
    if rouge:
        scores.update(rouge_scores(predictions, references, rouge))
    if "bleu" in wanted:
        scores["bleu"] = bleu_scores(predictions, references)
    if "string_similarity" in wanted:
        scores["string_similarity"] = string_similarity_scores(predictions, references)
    if "exact_match" in wanted:
        scores["exact_match"] = [float(r == p) for p, r in zip(predictions, references)]
    if "semantic_similarity" in wanted:
        scores["semantic_similarity"] = semantic_similarity_scores(predictions, references,
                                                                   embedder or default_embedder())
    return {m: scores[m] for m in wanted}


def rouge_scores(predictions: Sequence[str], references: Sequence[str],
                 rouge_types: Sequence[str]) -> dict[str, list[float]]:
    """F-measures from one ``RougeScorer`` for all pairs (RAGAS builds one per pair)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=True)
    out: dict[str, list[float]] = {t: [] for t in rouge_types}
    for prediction, reference in zip(predictions, references):
        result = scorer.score(reference, prediction)  # (target, prediction)
        for t in rouge_types:
            out[t].append(float(result[t].fmeasure))
    return out


def bleu_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """RAGAS ``BleuScore``, with one sacrebleu ``BLEU`` object instead of one per pair.

    What RAGAS computes: both texts are split on ``". "``; the reference's
    sentences become *alternative references* and the response's sentences
    hypotheses, and ``corpus_bleu`` zips hypotheses with reference
    positions — so only the response's first sentence is scored, against the
    best-matching reference sentence. Defaults are sacrebleu's ``corpus_bleu``
    (13a tokenizer, exp smoothing, no effective order), which is why a
    response under four tokens scores 0 even when identical to the reference.
    And "It rains a lot. The gate is shut." against "Boats wait. It rains a
    lot" scores 1.0: later response sentences are never seen. Compare
    multi-sentence answers with ROUGE-L rather than this BLEU.
    """
    from sacrebleu.metrics import BLEU

    bleu = BLEU()  # same defaults as sacrebleu.corpus_bleu, which RAGAS calls with no kwargs
    out = []
    for prediction, reference in zip(predictions, references):
        hypotheses = prediction.split(". ")
        reference_streams = [[sentence] for sentence in reference.split(". ")]
        score = bleu.corpus_score(hypotheses, reference_streams).score / 100
        out.append(min(1.0, float(score)))  # sacrebleu's 100.00000000000004 for a perfect match
    return out


def string_similarity_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """RAGAS ``NonLLMStringSimilarity`` (Levenshtein): ``1 - normalized_distance(reference, response)``."""
    from rapidfuzz.distance import Levenshtein

    return [float(1 - Levenshtein.normalized_distance(r, p)) for p, r in zip(predictions, references)]


def semantic_similarity_scores(predictions: Sequence[str], references: Sequence[str],
                               embedder: Embedder) -> list[float]:
    """RAGAS ``SemanticSimilarity`` (threshold None), with all texts embedded in batches.

    RAGAS replaces an empty text by ``" "``, embeds each text alone (unit
    vectors), normalises again in float64 and takes the dot product; a
    threshold, when set, turns that into 0/1. Same steps here, row-wise.
    """
    n = len(predictions)
    if n == 0:
        return []
    vectors = embedder.embed([r or " " for r in references] + [p or " " for p in predictions]).astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = np.einsum("ij,ij->i", vectors[:n], vectors[n:])
    return np.minimum(cosine, 1.0).tolist()  # round-off above 1 for identical texts; RAGAS keeps it


def aggregate(per_sample: dict[str, list[float]]) -> dict[str, float]:
    """Mean per metric over the measured (non-NaN) samples; NaN when none was measured."""
    out = {}
    for metric, values in per_sample.items():
        array = np.asarray(values, dtype=np.float64)
        measured = array[~np.isnan(array)]
        out[metric] = float(measured.mean()) if measured.size else math.nan
    return out
