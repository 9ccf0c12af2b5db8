"""Serving under overload (issue 13, item 7): the engine's queue is bounded, and a request that finds
it full is answered at once with 429, ``Retry-After`` and an OpenAI-shaped error, counted in /metrics —
instead of waiting, with its prompt held, behind every request before it.

A real server on a socket, one tiny model from a real MLflow registry. Generation is made slow
legitimately: batches of one, and a long answer (vLLM's ``ignore_eos`` with a large ``max_tokens``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sluice.serving import ServingHandle
from tests.serving.conftest import Registry, registry, tiny_models  # noqa: F401  (fixtures)
from tests.serving.slow_generation import LONG, SHORT, metrics, post, wait_for

MODEL = "overload-model"
QUEUE_BOUND = 2
REJECTED = 'sluice_serving_requests_rejected_total{reason="queue_full"}'


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]  # noqa: F811
    registry.register(MODEL, [1])
    config = registry.config(MODEL, tmp_path_factory.mktemp("overload-state"), max_batch_size=1,
                             max_queued_requests=QUEUE_BOUND, max_tokens_limit=480)
    with ServingHandle(config) as handle:
        handle.wait_until_serving("1")
        yield handle


def test_a_full_queue_answers_429_with_retry_after_and_counts_it(server: ServingHandle) -> None:
    url = server.url
    before = metrics(url)
    assert before["sluice_serving_queue_limit"] == QUEUE_BOUND
    with ThreadPoolExecutor(12) as pool:
        running = pool.submit(post, url, LONG)  # holds the only batch slot for a while
        wait_for(lambda: metrics(url)["sluice_serving_batch_size_count"] > before["sluice_serving_batch_size_count"],
                 "the long request started generating")
        burst = [pool.submit(post, url, {**SHORT, "stream": i % 2 == 1}) for i in range(8)]
        answers = [future.result() for future in burst]
        assert running.result().status_code == 200

    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 429}, statuses
    rejected = [answer for answer in answers if answer.status_code == 429]
    assert rejected, f"no request was refused with the queue bound at {QUEUE_BOUND}: {statuses}"
    assert statuses.count(200) >= QUEUE_BOUND, f"the queue should take {QUEUE_BOUND} before refusing: {statuses}"
    for answer in rejected:  # streamed or not, refused before any stream starts
        assert answer.headers["Retry-After"] == "1"
        assert answer.headers["content-type"].startswith("application/json")
        error = answer.json()["error"]
        assert error["code"] == "queue_full" and error["type"] == "server_error"
        assert "serving.max_queued_requests" in error["message"]

    after = metrics(url)
    assert after[REJECTED] - before.get(REJECTED, 0) == len(rejected)
    status_429 = 'sluice_serving_requests_total{endpoint="/v1/completions",status="429"}'
    assert after[status_429] - before.get(status_429, 0) == len(rejected)
    assert after["vllm:num_requests_waiting"] == 0
    assert post(url, SHORT).status_code == 200  # drained: served again
