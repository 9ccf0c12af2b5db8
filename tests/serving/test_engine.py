"""The engine on its own: dynamic batching gives the same tokens as one request
alone and as ``model.generate``; rows finish independently; swaps wait for the
running batch."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import pytest

from sluice.serving.engine import (
    Delta,
    Engine,
    Finished,
    GenerationRequest,
    Started,
    generate_blocking,
    load_model,
)

QUESTIONS = [
    "hi",
    "When does the sluice at Elmbridge close?",
    ("Context: The sluice at Elmbridge opens at 05:45 and closes at 20:30. Its keeper is Corwin Roe. Boats up to "
     "14 metres may pass.\nQuestion: Who keeps the sluice at Elmbridge?"),
    "Who keeps the sluice at Yewbrook?",
    "What is the water level?",
]
PROMPTS = [[{"role": "user", "content": q}] for q in QUESTIONS]


@pytest.fixture(scope="module")
def models(tiny_models: dict[int, Path]):  # type: ignore[no-untyped-def]
    return {1: load_model("1", tiny_models[1]), 2: load_model("2", tiny_models[2])}


@pytest.fixture
def engine(models):  # type: ignore[no-untyped-def]
    engine = Engine(max_batch_size=8, batch_wait_ms=100).start()  # a long wait: submitted together = one batch
    engine.install(models[1])
    yield engine
    engine.stop()


class Collector:
    """Records one request's events (they arrive on the engine's thread)."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.done = threading.Event()

    def __call__(self, event: object) -> None:
        self.events.append(event)
        if not isinstance(event, Started | Delta):
            self.done.set()

    @property
    def finished(self) -> Finished:
        assert self.done.wait(60), "no answer within 60 s"
        assert isinstance(self.events[-1], Finished), self.events[-1]
        return self.events[-1]

    @property
    def streamed(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Delta))


def submit_together(engine: Engine, requests: list[dict]) -> list[Collector]:
    collectors = [Collector() for _ in requests]
    for collector, request in zip(collectors, requests, strict=True):
        engine.submit(GenerationRequest(emit=collector, **{"temperature": 0.0, **request}))
    return collectors


def hf_greedy(model, prompt, max_new_tokens: int) -> list[int]:  # type: ignore[no-untyped-def]
    import torch

    ids = model.encode_chat(prompt)
    with torch.no_grad():
        out = model.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                   max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=model.pad_id)
    new = out[0, len(ids):].tolist()
    return new[:next((i for i, t in enumerate(new) if t in model.eos_ids), len(new))]


def test_greedy_tokens_are_the_same_alone_batched_and_with_generate(engine: Engine, models) -> None:  # type: ignore[no-untyped-def]
    lengths = {len(models[1].encode_chat(p)) for p in PROMPTS}
    assert len(lengths) == len(PROMPTS), "the prompts must differ in length, so the batch is padded"
    alone = [generate_blocking(engine, p, max_tokens=12) for p in PROMPTS]
    assert all(a.batch_size == 1 for a in alone)
    batched = [c.finished for c in submit_together(engine, [{"prompt": p, "max_tokens": 12} for p in PROMPTS])]
    assert [b.batch_size for b in batched] == [len(PROMPTS)] * len(PROMPTS)
    for prompt, one, many in zip(PROMPTS, alone, batched, strict=True):
        assert many.token_ids == one.token_ids, prompt
        assert many.text == one.text
        assert one.token_ids == hf_greedy(models[1], prompt, 12), prompt
    assert len({tuple(a.token_ids) for a in alone}) == len(PROMPTS), "different prompts should answer differently"


def test_rows_finish_on_their_own_budget_and_stop_strings(engine: Engine) -> None:
    reference = [generate_blocking(engine, p, max_tokens=16) for p in PROMPTS[:3]]
    stop_text = reference[2].text[4:7]
    assert stop_text and len(reference[2].text) > 7
    short, long, stopped = submit_together(engine, [
        {"prompt": PROMPTS[0], "max_tokens": 3},
        {"prompt": PROMPTS[1], "max_tokens": 16},
        {"prompt": PROMPTS[2], "max_tokens": 16, "stop": ["no such text", stop_text]},
    ])
    assert short.finished.token_ids == reference[0].token_ids[:3]
    assert (short.finished.finish_reason, short.finished.completion_tokens) == ("length", 3)
    assert long.finished.token_ids == reference[1].token_ids
    assert stopped.finished.finish_reason == "stop"
    assert stopped.finished.text == reference[2].text[:reference[2].text.index(stop_text)]
    assert stop_text not in stopped.streamed
    for collector in (short, long, stopped):  # the streamed pieces add up to the answer
        assert collector.streamed == collector.finished.text
        assert isinstance(collector.events[0], Started) and collector.events[0].batch_size == 3


def test_top_p_near_zero_is_greedy_and_a_seed_repeats(engine: Engine) -> None:
    greedy = generate_blocking(engine, PROMPTS[1], max_tokens=10)
    nucleus = generate_blocking(engine, PROMPTS[1], max_tokens=10, temperature=1.0, top_p=1e-6, seed=3)
    assert nucleus.token_ids == greedy.token_ids
    first = generate_blocking(engine, PROMPTS[1], max_tokens=10, temperature=1.5, seed=7)
    again = generate_blocking(engine, PROMPTS[1], max_tokens=10, temperature=1.5, seed=7)
    assert first.token_ids == again.token_ids
    others = {tuple(generate_blocking(engine, PROMPTS[1], max_tokens=10, temperature=1.5, seed=s).token_ids)
              for s in (8, 9, 10)}
    assert others - {tuple(first.token_ids)}, "other seeds should sample something else"


def test_a_cancelled_row_leaves_and_the_rest_decode_on(engine: Engine) -> None:
    reference = generate_blocking(engine, PROMPTS[3], max_tokens=20)
    gone, staying = Collector(), Collector()
    leaving = GenerationRequest(prompt=PROMPTS[2], max_tokens=20, temperature=0.0, emit=gone)

    def cancel_after_first(event: object) -> None:
        gone(event)
        if isinstance(event, Delta):
            leaving.cancelled = True

    leaving.emit = cancel_after_first
    engine.submit(leaving)
    engine.submit(GenerationRequest(prompt=PROMPTS[3], max_tokens=20, temperature=0.0, emit=staying))
    assert gone.finished.finish_reason == "cancelled"
    assert gone.finished.completion_tokens < 20
    assert staying.finished.token_ids == reference.token_ids
    assert staying.finished.batch_size == 2


def test_install_waits_for_the_running_batch_which_finishes_on_its_model(engine: Engine, models) -> None:  # type: ignore[no-untyped-def]
    other = Engine(batch_wait_ms=0).start()
    other.install(models[2])
    try:
        reference = {1: generate_blocking(engine, PROMPTS[1], max_tokens=40),
                     2: generate_blocking(other, PROMPTS[1], max_tokens=40)}
    finally:
        other.stop()
    assert reference[1].token_ids != reference[2].token_ids
    running = Collector()
    started = queue.Queue()

    def emit(event: object) -> None:
        running(event)
        if isinstance(event, Started):
            started.put(event)

    engine.submit(GenerationRequest(prompt=PROMPTS[1], max_tokens=40, temperature=0.0, emit=emit))
    assert started.get(timeout=30).version == "1"
    assert engine.install(models[2], timeout=60)
    assert running.done.is_set(), "install returned before the running batch finished"
    assert running.finished.version == "1"
    assert running.finished.token_ids == reference[1].token_ids
    after = generate_blocking(engine, PROMPTS[1], max_tokens=40)
    assert (after.version, after.token_ids) == ("2", reference[2].token_ids)
    assert engine.version == "2"


def test_requests_fail_cleanly_when_no_model_is_loaded() -> None:
    engine = Engine(batch_wait_ms=0).start()
    try:
        with pytest.raises(RuntimeError, match="no model version is loaded"):
            generate_blocking(engine, PROMPTS[0], max_tokens=2, timeout=10)
    finally:
        engine.stop()
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="shutting down"):
        engine.submit(GenerationRequest(prompt=PROMPTS[0], max_tokens=2, emit=lambda e: None))
    assert time.perf_counter() - started < 1
