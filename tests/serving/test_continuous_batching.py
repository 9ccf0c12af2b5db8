"""Continuous batching: a request joins the running rows at the next step and leaves when done, with
the same tokens as alone; static batching makes it wait; min_tokens; work run between steps."""

from __future__ import annotations

import dataclasses
import queue
import threading

import pytest

from sluice.serving.engine import Delta, Engine, Finished, GenerationRequest, Started, generate_blocking, load_model
from tests.serving.test_engine import PROMPTS, Collector, hf_greedy


@pytest.fixture(scope="module")
def model(tiny_models):  # type: ignore[no-untyped-def]
    return load_model("1", tiny_models[1])


def started_engine(model, batching: str = "continuous", **kwargs) -> Engine:  # type: ignore[no-untyped-def]
    engine = Engine(max_batch_size=8, batch_wait_ms=0, batching=batching, **kwargs).start()
    engine.install(model)
    return engine


class Timeline:
    """The order in which requests finished, across threads."""

    def __init__(self) -> None:
        self.finished: list[str] = []
        self.lock = threading.Lock()

    def request(self, name: str, on_event=None, **fields) -> tuple[Collector, GenerationRequest]:  # type: ignore[no-untyped-def]
        collector = Collector()

        def emit(event: object) -> None:
            if isinstance(event, Finished):
                with self.lock:
                    self.finished.append(name)
            collector(event)
            if on_event:
                on_event(event)

        return collector, GenerationRequest(emit=emit, temperature=0.0, **fields)


def run_long_then_short(engine: Engine) -> tuple[list[str], Collector, Collector]:
    """A long request (200 tokens, ignore_eos); once it streams, a short one (3 tokens) arrives."""
    timeline, streaming = Timeline(), threading.Event()
    long, long_request = timeline.request("long", lambda e: isinstance(e, Delta) and streaming.set(),
                                          prompt=PROMPTS[2], max_tokens=200, ignore_eos=True)
    short, short_request = timeline.request("short", prompt=PROMPTS[0], max_tokens=3)
    engine.submit(long_request)
    assert streaming.wait(30)
    engine.submit(short_request)
    long.finished, short.finished  # noqa: B018 (waits for both)
    return timeline.finished, long, short


def test_a_request_joins_the_running_batch_and_leaves_before_it_ends(model) -> None:  # type: ignore[no-untyped-def]
    engine = started_engine(model)
    try:
        order, long, short = run_long_then_short(engine)
    finally:
        engine.stop()
    assert order == ["short", "long"]
    assert isinstance(short.events[0], Started) and short.events[0].batch_size == 2  # it joined the long one
    assert long.finished.completion_tokens == 200
    assert short.finished.token_ids == hf_greedy(model, PROMPTS[0], 3)


def test_static_batching_makes_the_late_request_wait_for_the_batch(model) -> None:  # type: ignore[no-untyped-def]
    engine = started_engine(model, batching="static")
    try:
        order, _, short = run_long_then_short(engine)
    finally:
        engine.stop()
    assert order == ["long", "short"]
    assert isinstance(short.events[0], Started) and short.events[0].batch_size == 1


def test_rows_joining_at_different_steps_get_the_tokens_they_get_alone(model) -> None:  # type: ignore[no-untyped-def]
    """Prompts of different lengths join a running batch one after another (the cache is padded on
    whichever side is shorter) and leave at different steps (unused positions are cut)."""
    expected = [hf_greedy(model, prompt, 24) for prompt in PROMPTS]
    engine = started_engine(model)
    collectors = [Collector() for _ in PROMPTS]
    streaming = [threading.Event() for _ in PROMPTS]
    try:
        for index, (prompt, collector) in enumerate(zip(PROMPTS, collectors, strict=True)):
            def emit(event: object, collector=collector, index=index) -> None:  # type: ignore[no-untyped-def]
                collector(event)
                if isinstance(event, Delta):
                    streaming[index].set()
            engine.submit(GenerationRequest(prompt=prompt, max_tokens=24 - 3 * index, temperature=0.0, emit=emit))
            assert streaming[index].wait(30)  # the next one arrives while this one decodes
        finished = [c.finished for c in collectors]
    finally:
        engine.stop()
    sizes = [c.events[0].batch_size for c in collectors]
    assert max(sizes) > 1, f"no request joined a running batch: {sizes}"
    for index, (done, reference) in enumerate(zip(finished, expected, strict=True)):
        assert done.token_ids == reference[:24 - 3 * index], PROMPTS[index]


def test_min_tokens_keeps_the_end_of_turn_away_until_reached(model) -> None:  # type: ignore[no-untyped-def]
    engine = started_engine(model)
    try:
        free = generate_blocking(engine, PROMPTS[1], max_tokens=12)
        assert len(free.token_ids) >= 4
        # make the model's third greedy token its end of turn
        ending = dataclasses.replace(model, version="1e", eos_ids=frozenset({free.token_ids[2]}))
        engine.install(ending)
        early = generate_blocking(engine, PROMPTS[1], max_tokens=12)
        done: queue.Queue[Finished] = queue.Queue()
        engine.submit(GenerationRequest(prompt=PROMPTS[1], max_tokens=12, min_tokens=6, temperature=0.0,
                                        stream=False, emit=lambda e: isinstance(e, Finished) and done.put(e)))
        held = done.get(timeout=30)
    finally:
        engine.stop()
    assert (early.token_ids, early.finish_reason) == (free.token_ids[:2], "stop")
    assert held.completion_tokens >= 6
    assert free.token_ids[2] not in held.token_ids[:6]


def test_work_runs_on_the_worker_between_steps_and_its_error_comes_back(model) -> None:  # type: ignore[no-untyped-def]
    engine = started_engine(model)
    long, streaming = Collector(), threading.Event()

    def emit(event: object) -> None:
        long(event)
        if isinstance(event, Delta):
            streaming.set()

    try:
        engine.submit(GenerationRequest(prompt=PROMPTS[1], max_tokens=150, ignore_eos=True, temperature=0.0,
                                        emit=emit))
        assert streaming.wait(30)
        seen = engine.call_on_worker(lambda: (threading.current_thread().name, engine.running,
                                              engine.call_on_worker(lambda: "nested")), timeout=30)
        assert seen == ("sluice-serving-engine", 1, "nested")  # a call from the worker runs at once
        assert not long.done.is_set(), "the call should run while the request still decodes"

        def broken() -> None:
            raise KeyError("no adapter named 'x'")

        with pytest.raises(KeyError, match="no adapter named"):
            engine.call_on_worker(broken, timeout=30)
        assert long.finished.completion_tokens == 150  # the failed call did not disturb generation
    finally:
        engine.stop()


def test_a_swap_waits_for_the_running_rows_and_no_row_joins_them_meanwhile(model, tiny_models) -> None:  # type: ignore[no-untyped-def]
    other = load_model("2", tiny_models[2])
    engine = started_engine(model)
    long, streaming = Collector(), threading.Event()
    try:
        engine.submit(GenerationRequest(prompt=PROMPTS[1], max_tokens=120, ignore_eos=True, temperature=0.0,
                                        emit=lambda e: (long(e), isinstance(e, Delta) and streaming.set())))
        assert streaming.wait(30)
        swap = threading.Thread(target=engine.install, args=(other,), kwargs={"timeout": 60})
        swap.start()
        while not engine._swap_waiting():  # the install is pending before the next request comes
            threading.Event().wait(0.01)
        late = generate_blocking(engine, PROMPTS[0], max_tokens=4)
        swap.join(60)
    finally:
        engine.stop()
    assert long.finished.version == "1" and long.finished.completion_tokens == 120
    assert late.version == "2" and late.batch_size == 1


def test_a_request_for_an_adapter_the_model_lacks_fails_alone(model) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(max_batch_size=8, batch_wait_ms=200).start()  # both requests start together
    engine.install(model)
    lost, fine = Collector(), Collector()
    try:
        engine.submit(GenerationRequest(prompt=PROMPTS[0], max_tokens=4, temperature=0.0, emit=lost,
                                        adapter="gone-with-the-old-base"))
        engine.submit(GenerationRequest(prompt=PROMPTS[1], max_tokens=4, temperature=0.0, emit=fine))
        assert fine.finished.token_ids == hf_greedy(model, PROMPTS[1], 4)
        assert lost.done.wait(30)
    finally:
        engine.stop()
    error = lost.events[-1].error
    assert isinstance(error, LookupError) and "'gone-with-the-old-base' is not loaded" in str(error)


def test_a_row_whose_token_cannot_be_sampled_fails_alone(model) -> None:  # type: ignore[no-untyped-def]
    """Logits divided by a vanishing temperature overflow to inf, so the distribution is NaN and sampling
    raises, as it does for an adapter with broken weights: that row fails, its batch neighbour does not."""
    engine = Engine(max_batch_size=8, batch_wait_ms=200).start()  # both requests start together
    engine.install(model)
    broken, fine = Collector(), Collector()
    try:
        engine.submit(GenerationRequest(prompt=PROMPTS[0], max_tokens=6, temperature=1e-45, seed=1, emit=broken))
        engine.submit(GenerationRequest(prompt=PROMPTS[1], max_tokens=6, temperature=0.0, emit=fine))
        assert fine.finished.token_ids == hf_greedy(model, PROMPTS[1], 6)
        assert fine.finished.batch_size == 2
        assert broken.done.wait(30)
    finally:
        engine.stop()
    assert isinstance(broken.events[-1].error, RuntimeError)
