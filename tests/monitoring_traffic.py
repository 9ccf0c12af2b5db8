"""Live traffic for the monitoring tests: prompts drawn from the demo's training distribution (the demo
generator itself, other gates), prompts on other topics, prompts of other lengths, and a request log written
by the server's own :class:`~sluice.serving.telemetry.RequestLog`."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

from sluice.core.data import demo_data
from sluice.serving.telemetry import RequestLog

OTHER_TOPICS = [
    "How do I bake sourdough bread at home?", "What is the capital of Australia?",
    "Write a Python function that reverses a list.", "Recommend a good science fiction novel.",
    "How do I fix a flat bicycle tyre?", "Explain how vaccines train the immune system.",
    "What are the rules of castling in chess?", "How can I sleep better at night?",
    "Translate 'good morning' into Spanish.", "What causes inflation in an economy?",
    "How many moons does Jupiter have?", "Give me a recipe for a vegetable curry.",
]


def training_distribution(count: int, seed: int) -> list[str]:
    """New gates and questions from the demo's own generator: what the model was trained on, not the rows."""
    rng = random.Random(seed)
    gates = demo_data._gates(rng, count, set())
    return [demo_data._prompt(gate, rng.choice(demo_data._QUESTIONS)[0].format(**vars(gate))) for gate in gates]


def other_topics(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(OTHER_TOPICS)} Keep it brief, please ({i})." for i in range(count)]


def short_questions(count: int, seed: int) -> list[str]:
    """The same topic, without the context passage: a few words instead of about forty."""
    return [prompt.split("\nQuestion: ")[1] for prompt in training_distribution(count, seed)]


def training_user_turns() -> list[str]:
    """The user turns of the demo's sft rows (what training published)."""
    rows = demo_data.build_demo_data()["sft.jsonl"]
    return [row["prompt"] if "prompt" in row else row["messages"][1]["content"] for row in rows]


def write_requests(path: Path, prompts: list[str], at: datetime, version: str, *, answers: list[str] | None = None,
                   first_id: int = 0) -> list[str]:
    """One answered chat request per prompt, logged at ``at`` as the server logs them; their response ids."""
    log = RequestLog(path)
    ids = []
    for i, prompt in enumerate(prompts):
        response_id = f"chatcmpl-{first_id + i}"
        answer = answers[i] if answers is not None else "The sluice opens at 07:30."
        log.write({"id": response_id, "time": at.isoformat(), "endpoint": "/v1/chat/completions", "status": 200,
                   "model": "sluicegate-model", "model_version": version, "stream": False,
                   "prompt": [{"role": "system", "content": demo_data.SYSTEM_PROMPT},
                              {"role": "user", "content": prompt}],
                   "completion": answer, "finish_reason": "stop"})
        ids.append(response_id)
    return ids
