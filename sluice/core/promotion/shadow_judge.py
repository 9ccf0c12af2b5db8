"""The LLM judge's pairwise preference between a shadow answer and the champion's answer to the same request.

Only under ``promotion.rollout: shadow`` and only when a judge is configured (``evaluation.judge.model``,
endpoint ``SLUICE_JUDGE_BASE_URL``, any OpenAI-compatible server with JSON mode). Each pair is shown as
answers A and B; the champion is A for even pairs and B for odd ones, so a judge that favours a position
favours neither side overall. The preference is the challenger's share of the judged pairs, a tie counting
half: 0.5 means "as good as the champion". A call that fails or answers no verdict is counted, never scored.
"""

from __future__ import annotations

import json
import logging
import os
from typing import NamedTuple

from sluice.core.evaluation.scoring import (
    JUDGE_URL_VARIABLE,  # the same endpoint as the evaluation judge's
)

log = logging.getLogger(__name__)
SYSTEM = ("You compare two answers to the same request. Reply with a JSON object {\"better\": \"A\"}, "
          "{\"better\": \"B\"} or {\"better\": \"tie\"}: which answer is more helpful, correct and complete.")


class Preference(NamedTuple):
    challenger_share: float | None  # None: no pair judged
    judged: int
    failed: int


def judge_preference(prompts: list[str], champion: list[str], challenger: list[str], *, model: str,
                     timeout_seconds: float) -> Preference:
    """The challenger's share of the judge's preferences over the pairs (see the module's docstring)."""
    from openai import OpenAI, OpenAIError

    base_url = os.environ.get(JUDGE_URL_VARIABLE)
    if not base_url:
        raise ValueError(f"evaluation.judge.model is {model!r} but {JUDGE_URL_VARIABLE} is not set: set it to the "
                         "judge's OpenAI-compatible base URL, or unset the judge model")
    client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                    timeout=timeout_seconds, max_retries=0)
    points, failed = [], 0
    for i, (prompt, ours, theirs) in enumerate(zip(prompts, champion, challenger, strict=True)):
        swapped = i % 2 == 1  # the challenger is A in odd pairs
        first, second = (theirs, ours) if swapped else (ours, theirs)
        try:
            better = _ask(client, model, prompt, first, second)
        except (OpenAIError, ValueError, KeyError, TypeError, IndexError) as error:  # counted, never scored
            log.warning("judge call %d failed: %s: %s", i, type(error).__name__, error)
            failed += 1
            continue
        points.append(0.5 if better == "tie" else float((better == "A") == swapped))
    return Preference(sum(points) / len(points) if points else None, len(points), failed)


def _ask(client: object, model: str, prompt: str, first: str, second: str) -> str:
    user = f"Request:\n{prompt}\n\nAnswer A:\n{first or '(empty)'}\n\nAnswer B:\n{second or '(empty)'}"
    reply = client.chat.completions.create(  # type: ignore[attr-defined]
        model=model, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])
    better = json.loads(reply.choices[0].message.content or "")["better"]
    if better not in ("A", "B", "tie"):
        raise ValueError(f"the judge answered better={better!r}, not A, B or tie")
    return str(better)
