"""The paired bootstrap and the text metrics, pinned where mutation testing (tools/mutation.py,
scope "metrics") found them unchecked: the exact interval against a reference computation, the
argument limits, and the text metrics' edge cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from sluice.core.evaluation.metrics import text
from sluice.core.evaluation.metrics.bootstrap import paired_bootstrap


def _reference_interval(differences: np.ndarray, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """The percentile interval of ``resamples`` paired resample means, drawn in one go."""
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@pytest.mark.parametrize(("n", "resamples", "confidence", "seed"), [
    (50, 1000, 0.95, 0),
    (50, 999, 0.9, 3),
    (5000, 1000, 0.95, 0),  # 5000 samples: the resamples are drawn in chunks of 800
])
def test_the_interval_is_the_percentile_interval_of_the_resample_means(n: int, resamples: int, confidence: float,
                                                                       seed: int) -> None:
    data = np.random.default_rng(7)
    candidate, baseline = data.random(n), data.random(n)
    result = paired_bootstrap(candidate.tolist(), baseline.tolist(), metric="rougeL", resamples=resamples,
                              confidence=confidence, seed=seed)
    low, high = _reference_interval(candidate - baseline, resamples, confidence, seed)
    assert (result.low, result.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert result.mean_difference == pytest.approx(float((candidate - baseline).mean()), abs=1e-12)
    assert (result.metric, result.samples, result.confidence) == ("rougeL", n, confidence)


def test_the_defaults_are_1000_resamples_and_seed_0() -> None:
    data = np.random.default_rng(11)
    candidate, baseline = data.random(40).tolist(), data.random(40).tolist()
    assert paired_bootstrap(candidate, baseline, metric="m") == paired_bootstrap(
        candidate, baseline, metric="m", resamples=1000, confidence=0.95, seed=0)


def test_every_sample_can_be_drawn() -> None:
    # two samples: a resample of only the first (or only the second) happens a quarter of the time
    result = paired_bootstrap([1.0, 0.0], [0.0, 0.0], metric="m")
    assert (result.low, result.mean_difference, result.high) == (0.0, 0.5, 1.0)
    single = paired_bootstrap([0.7], [0.2], metric="m")
    assert single.low == single.high == single.mean_difference == pytest.approx(0.5)


def test_the_arithmetic_is_float64_whatever_the_input_precision() -> None:
    data = np.random.default_rng(5)
    candidate, baseline = data.random(64).astype(np.float32), data.random(64).astype(np.float32)
    as_floats = paired_bootstrap(candidate.tolist(), baseline.tolist(), metric="m")
    assert paired_bootstrap(candidate, baseline, metric="m") == as_floats  # type: ignore[arg-type]


def test_one_resample_is_allowed() -> None:
    result = paired_bootstrap([0.5, 0.25, 1.0], [0.0, 0.0, 0.0], metric="m", resamples=1)
    assert result.low == result.high and not math.isnan(result.low)


@pytest.mark.parametrize(("options", "message"), [
    ({"resamples": 0}, "resamples must be >= 1, got 0"),
    ({"confidence": 0.0}, "confidence must be in (0, 1), got 0.0"),
    ({"confidence": 1.0}, "confidence must be in (0, 1), got 1.0"),
    ({"confidence": 1.5}, "confidence must be in (0, 1), got 1.5"),
])
def test_arguments_out_of_range_are_refused_by_name(options: dict, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        paired_bootstrap([0.5, 0.25], [0.0, 0.0], metric="m", **options)
    assert str(raised.value) == message


# --- text metrics, without loading MiniLM ------------------------------------------

SENTENCE = "The sluice at Ashbrook closes at dusk every day."


class TableEmbedder:
    """A stand-in for the MiniLM embedder: fixed, not unit-length, float32 vectors per text, and
    a record of what it was asked to embed (the arithmetic after embedding is what is tested)."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors, self.calls = vectors, []  # type: ignore[var-annotated]

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


def test_every_metric_in_the_order_asked_and_only_those() -> None:
    embedder = TableEmbedder({SENTENCE: [3.0, 4.0]})
    wanted = ["exact_match", "semantic_similarity", "bleu", "rougeL", "string_similarity", "rouge1", "rouge2"]
    scores = text.score_without_llm([SENTENCE], [SENTENCE], wanted, embedder=embedder)  # type: ignore[arg-type]
    assert list(scores) == wanted
    assert scores == {name: [1.0] for name in wanted}  # identical texts: exactly 1 (BLEU and cosine capped)
    assert text.score_without_llm([SENTENCE], [SENTENCE], ["rouge2", "exact_match", "rouge2"]) == {
        "rouge2": [1.0], "exact_match": [1.0]}


def test_the_embedder_is_asked_only_for_semantic_similarity() -> None:
    embedder = TableEmbedder({})
    text.score_without_llm(["a b c"], ["a b d"], ["rouge1", "bleu", "string_similarity", "exact_match"],
                           embedder=embedder)  # type: ignore[arg-type]
    assert embedder.calls == []


def test_semantic_similarity_is_the_cosine_of_the_two_embeddings() -> None:
    embedder = TableEmbedder({"north": [0.0, 2.0], "north-east": [3.0, 3.0], "east": [5.0, 0.0], " ": [1.0, 1.0],
                              "south": [0.0, -1.0]})
    scores = text.semantic_similarity_scores(["north-east", "east", "", "north", "east"],
                                             ["north", "north", "east", "south", ""], embedder)  # type: ignore[arg-type]
    assert scores == [pytest.approx(math.sqrt(0.5), abs=1e-12), 0.0, pytest.approx(math.sqrt(0.5), abs=1e-12), -1.0,
                      pytest.approx(math.sqrt(0.5), abs=1e-12)]
    # references first, then predictions, one batch; an empty text is embedded as " " (as RAGAS does)
    assert embedder.calls == [["north", "north", "east", "south", " ", "north-east", "east", " ", "north", "east"]]
    assert text.semantic_similarity_scores([], [], embedder) == []  # type: ignore[arg-type]
    assert len(embedder.calls) == 1


def test_semantic_similarity_of_a_vector_with_itself_is_capped_at_one() -> None:
    # this vector's cosine with itself comes out at 1.0000000000000002 in float64
    vector = np.random.default_rng(1).random(384).astype(np.float32).tolist()
    embedder = TableEmbedder({"a": vector, "b": vector})
    assert text.semantic_similarity_scores(["a"], ["b"], embedder) == [1.0]  # type: ignore[arg-type]


@pytest.mark.parametrize(("prediction", "reference", "expected"), [
    (SENTENCE, SENTENCE, 1.0),
    ("Gates shut.", "Gates shut.", 0.0),  # under four tokens: 0 even when identical (sacrebleu's corpus BLEU)
    (f"{SENTENCE[:-1]}. Then it rains.", f"Boats wait. {SENTENCE[:-1]}", 1.0),  # first sentence vs the best one
])
def test_bleu_scores_the_first_sentence_against_the_closest_reference_sentence(prediction: str, reference: str,
                                                                              expected: float) -> None:
    assert text.bleu_scores([prediction], [reference]) == [expected]


def test_string_similarity_is_one_minus_the_normalised_levenshtein_distance() -> None:
    assert text.string_similarity_scores(["kitten", "", "abc"], ["sitting", "", "abc"]) == [
        pytest.approx(1 - 3 / 7), 1.0, 1.0]


def test_rouge_uses_the_stemmer_and_scores_each_pair() -> None:
    scores = text.rouge_scores(["The gates closed", "open"], ["the gate closes", "shut"], ["rouge1", "rougeL"])
    assert scores == {"rouge1": [1.0, 0.0], "rougeL": [1.0, 0.0]}


def test_a_text_that_is_not_a_string_is_named() -> None:
    with pytest.raises(TypeError) as raised:
        text.score_without_llm(["a", 3], ["a", "b"], ["exact_match"])  # type: ignore[list-item]
    assert str(raised.value) == "predictions[1] is int, expected str"


def test_aggregate_is_the_mean_of_the_measured_samples() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing measured is a normal outcome: no "mean of empty slice" warning
        result = text.aggregate({"a": [1.0, math.nan, 0.5], "b": [math.nan], "c": [], "d": [0.25]})
    assert list(result) == ["a", "b", "c", "d"]
    assert result["a"] == 0.75 and result["d"] == 0.25 and type(result["a"]) is float
    assert math.isnan(result["b"]) and math.isnan(result["c"])
