"""The LLM judge in a rollout's verdict: the shadow's pairwise preference and the canary's pointwise score.

Only when a judge is configured (``evaluation.judge.model``, endpoint ``SLUICE_JUDGE_BASE_URL``, any
OpenAI-compatible server with JSON mode). A call that fails or answers no verdict is counted, never scored.

- :func:`judge_preference` (``promotion.rollout: shadow``): each pair, a shadow answer and the champion's
  answer to the same request, is shown as answers A and B; the champion is A for even pairs and B for odd
  ones, so a judge that favours a position favours neither side overall. The preference is the
  challenger's share of the judged pairs, a tie counting half: 0.5 means "as good as the champion".
- :func:`judge_scores` (``promotion.rollout: canary``): the two sides answered different requests, so there
  is no pair to compare; each answer is rated alone, reference-free, 1 (useless) to 5 (helpful, correct
  and complete), and a side's score is the mean of its rated answers.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, NamedTuple

from sluice.core.evaluation.scoring import (
    JUDGE_URL_VARIABLE,  # the same endpoint as the evaluation judge's
)

if TYPE_CHECKING:
    from openai import OpenAI

log = logging.getLogger(__name__)
PAIRWISE = ("You compare two answers to the same request. Reply with a JSON object {\"better\": \"A\"}, "
            "{\"better\": \"B\"} or {\"better\": \"tie\"}: which answer is more helpful, correct and complete.")
POINTWISE = ("You rate one answer to a request, with no reference answer. Reply with a JSON object {\"score\": N}, "
             "N an integer from 1 (empty, off-topic, wrong or a needless refusal) to 5 (helpful, correct and "
             "complete).")


class Preference(NamedTuple):
    challenger_share: float | None  # None: no pair judged
    judged: int
    failed: int


class Scores(NamedTuple):
    mean: float | None  # None: no answer rated
    judged: int  # rated answers ...
    failed: int  # ... and calls that failed or gave no score


def judge_preference(prompts: list[str], champion: list[str], challenger: list[str], *, model: str,
                     timeout_seconds: float) -> Preference:
    """The challenger's share of the judge's preferences over the pairs (see the module's docstring)."""
    from openai import OpenAIError

    client = _client(model, timeout_seconds)
    points, failed = [], 0
    for i, (prompt, ours, theirs) in enumerate(zip(prompts, champion, challenger, strict=True)):
        swapped = i % 2 == 1  # the challenger is A in odd pairs
        first, second = (theirs, ours) if swapped else (ours, theirs)
        try:
            better = _ask_better(client, model, prompt, first, second)
        except (OpenAIError, ValueError, KeyError, TypeError, IndexError) as error:  # counted, never scored
            log.warning("judge call %d failed: %s: %s", i, type(error).__name__, error)
            failed += 1
            continue
        points.append(0.5 if better == "tie" else float((better == "A") == swapped))
    return Preference(sum(points) / len(points) if points else None, len(points), failed)


def judge_scores(prompts: list[str], answers: list[str], *, model: str, timeout_seconds: float) -> Scores:
    """The judge's mean 1-5 score of the answers, each rated alone (see the module's docstring)."""
    from openai import OpenAIError

    client = _client(model, timeout_seconds)
    scores, failed = [], 0
    for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        try:
            scores.append(_ask_score(client, model, prompt, answer))
        except (OpenAIError, ValueError, KeyError, TypeError, IndexError) as error:  # counted, never scored
            log.warning("judge call %d failed: %s: %s", i, type(error).__name__, error)
            failed += 1
    return Scores(sum(scores) / len(scores) if scores else None, len(scores), failed)


def _client(model: str, timeout_seconds: float) -> OpenAI:
    from openai import OpenAI

    base_url = os.environ.get(JUDGE_URL_VARIABLE)
    if not base_url:
        raise ValueError(f"evaluation.judge.model is {model!r} but {JUDGE_URL_VARIABLE} is not set: set it to the "
                         "judge's OpenAI-compatible base URL, or unset the judge model")
    return OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                  timeout=timeout_seconds, max_retries=0)


def _verdict(client: OpenAI, model: str, system: str, user: str) -> dict[str, object]:
    reply = client.chat.completions.create(
        model=model, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
    verdict = json.loads(reply.choices[0].message.content or "")
    if not isinstance(verdict, dict):
        raise TypeError(f"the judge answered {verdict!r}, not a JSON object")
    return verdict


def _ask_better(client: OpenAI, model: str, prompt: str, first: str, second: str) -> str:
    user = f"Request:\n{prompt}\n\nAnswer A:\n{first or '(empty)'}\n\nAnswer B:\n{second or '(empty)'}"
    better = _verdict(client, model, PAIRWISE, user)["better"]
    if better not in ("A", "B", "tie"):
        raise ValueError(f"the judge answered better={better!r}, not A, B or tie")
    return str(better)


def _ask_score(client: OpenAI, model: str, prompt: str, answer: str) -> float:
    user = f"Request:\n{prompt}\n\nAnswer:\n{answer or '(empty)'}"
    score = _verdict(client, model, POINTWISE, user)["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not 1 <= score <= 5:
        raise ValueError(f"the judge answered score={score!r}, not a number from 1 to 5")
    return float(score)
