"""Scoring generated answers: the metrics that need no LLM for every sample,
and the LLM judge's when one is configured."""

from __future__ import annotations

import logging
import os
from typing import Any

from sluice.core.config import EvaluationConfig

JUDGE_URL_VARIABLE = "SLUICE_JUDGE_BASE_URL"
log = logging.getLogger(__name__)


def score_answers(rows: list[dict[str, Any]], answers: list[str], settings: EvaluationConfig,
                  logger: logging.Logger | logging.LoggerAdapter = log) -> tuple[dict[str, list[float]], int]:
    """Per-sample scores for every configured metric (and the judge's, when
    one is configured); the number of failed judge attempts."""
    from sluice.core.evaluation.metrics.embeddings import default_embedder
    from sluice.core.evaluation.metrics.judge import score_with_judge
    from sluice.core.evaluation.metrics.text import score_without_llm

    references = [row["reference"] for row in rows]
    embedder = default_embedder() if "semantic_similarity" in settings.metrics else None  # loaded once
    scores = score_without_llm(answers, references, settings.metrics, embedder=embedder)
    judge = settings.judge
    if judge.model:
        base_url = os.environ.get(JUDGE_URL_VARIABLE)
        if not base_url:
            raise ValueError(f"evaluation.judge.model is {judge.model!r} but {JUDGE_URL_VARIABLE} is not set: "
                             "set it to the judge's OpenAI-compatible base URL, or unset the judge model")
        judged = score_with_judge([row["question"] for row in rows], [list(row["contexts"]) for row in rows],
                                  answers, references, model=judge.model, base_url=base_url,
                                  api_key=os.environ.get("OPENAI_API_KEY"), metrics=judge.metrics,
                                  repeats=judge.repeats, timeout_seconds=judge.timeout_seconds, embedder=embedder)
        if any(judged.failed_attempts.values()):
            logger.warning("judge calls failed (those samples count as not measured): %s; e.g. %s",
                                     judged.failed_attempts, judged.error_examples)
        scores.update(judged)
        return scores, sum(judged.failed_attempts.values())
    return scores, 0
