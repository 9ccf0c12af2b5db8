"""The shadow's evidence from a request log: shadow answers paired with the champion answers they copy, MiniLM
similarity, and the judge's pairwise preference through an OpenAI-compatible endpoint on loopback (answers
are shown in both orders, so a judge that always says "A" prefers neither side)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluice.core.config import JudgeConfig
from sluice.core.config.sections import ShadowConfig
from sluice.core.evaluation.metrics.embeddings import default_embedder
from sluice.core.promotion.shadow import decide_shadow, measure_shadow
from tests.judge_endpoint import judge_endpoint

pytestmark = pytest.mark.slow  # loads MiniLM

START = datetime(2026, 1, 1, tzinfo=UTC)


def pairwise_verdict(body: dict) -> str:
    """Prefers the answer mentioning the keeper; ``always-a`` as the model: always says A."""
    prompt = body["messages"][-1]["content"]
    first = prompt.split("Answer A:")[1].split("Answer B:")[0]
    better = "A" if body["model"] == "always-a" or "keeper" in first else "B"
    return "not json" if "Q-broken" in prompt else json.dumps({"better": better})


@pytest.fixture
def judge_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    """The judge's endpoint in SLUICE_JUDGE_BASE_URL; the request bodies it received."""
    with judge_endpoint(pairwise_verdict) as (url, seen):
        monkeypatch.setenv("SLUICE_JUDGE_BASE_URL", url)
        yield seen


def write_log(path: Path, pairs: list[tuple[str, str, str]], failed: int = 0) -> None:
    at = (START + timedelta(seconds=1)).isoformat()
    rows = []
    for i, (question, champion, shadow) in enumerate(pairs):
        rows.append({"id": f"c{i}", "time": at, "status": 200, "model_version": "1", "alias": "champion",
                     "canary": False, "prompt": [{"role": "user", "content": question}], "completion": champion})
        rows.append({"id": f"s{i}", "time": at, "status": 200, "model_version": "2", "alias": "challenger",
                     "shadow": True, "shadows": f"c{i}", "completion": shadow})
    rows += [{"id": f"f{i}", "time": at, "status": 500, "model_version": "2", "shadow": True, "shadows": "c0"}
             for i in range(failed)]
    rows.append({"id": "old", "time": START.isoformat(), "status": 500, "model_version": "2", "shadow": True})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_pairs_similarity_and_the_judges_preference(judge_url: list[dict], tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    good, bad = "The keeper of the sluice is Ada.", "Bread is baked at dawn."
    write_log(log, [("Who keeps the sluice? Q-broken", good, bad)] + [("Who keeps the sluice?", good, bad)] * 4,
              failed=1)
    since = START + timedelta(milliseconds=500)  # the "old" failure is before the trial
    judge = JudgeConfig(model="judge", timeout_seconds=5)
    evidence = measure_shadow(log, challenger="2", champion="1", started=since, embedder=default_embedder(),
                              judge=judge, now=START + timedelta(seconds=60))
    assert (evidence.mirrored, evidence.errors, evidence.compared) == (6, 1, 5)
    assert evidence.mean_similarity is not None and evidence.mean_similarity < 0.5
    assert (evidence.judge_preference, evidence.judged, evidence.judge_failed) == (0.0, 5, 1)
    prompts = [body["messages"][-1]["content"] for body in judge_url]
    assert "Answer A:\nThe keeper" in prompts[0] and "Answer B:\nThe keeper" in prompts[1]  # both orders
    verdict = decide_shadow(evidence, ShadowConfig(min_requests=5, min_mean_similarity=0.1))
    assert verdict.outcome == "withdraw"
    assert any(f.startswith("judge's preference for @challenger 0.00 over 4 judged pairs") for f in verdict.failed)

    always_a = measure_shadow(log, challenger="2", champion="1", started=since, embedder=default_embedder(),
                              judge=JudgeConfig(model="always-a"), max_judged=4)
    assert (always_a.judge_preference, always_a.judged) == (0.5, 4)  # position bias cancels out
    unjudged = measure_shadow(log, challenger="2", champion="1", started=since, embedder=default_embedder())
    assert unjudged.judged == 0 and not any("judge" in r for r in decide_shadow(unjudged, ShadowConfig()).reasons)
