"""RAGAS's LLM-judge metrics against any OpenAI-compatible endpoint, each
sample judged ``repeats`` times; a failed attempt is NaN and counted, never 0."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from sluice.core.evaluation.metrics.embeddings import Embedder, default_embedder, ragas_embeddings
from sluice.core.evaluation.metrics.inputs import check_lengths, check_metrics, check_strings
from sluice.core.evaluation.metrics.ragas_import import import_ragas

if TYPE_CHECKING:
    from ragas.llms.base import InstructorBaseRagasLLM

log = logging.getLogger(__name__)

JUDGE_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
_ERROR_EXAMPLES = 5  # distinct judge error messages kept per metric


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
    wanted = check_metrics(metrics, JUDGE_METRICS)
    check_lengths(questions=questions, contexts=contexts, predictions=predictions, references=references)
    for name, values in (("questions", questions), ("predictions", predictions), ("references", references)):
        check_strings(name, values)
    for i, sample_contexts in enumerate(contexts):
        if isinstance(sample_contexts, str) or not isinstance(sample_contexts, Sequence):
            raise TypeError(f"contexts[{i}] is {type(sample_contexts).__name__}, expected a list of str")
        check_strings(f"contexts[{i}]", sample_contexts)
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
