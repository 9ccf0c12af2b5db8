"""A client that disconnects cancels its generation (issue 13, item 7): a waiting request leaves the
queue, a running one stops at the next step — streamed or not — and /metrics counts it.

Clients are raw sockets that send a request and close, as a client that times out or crashes does.
Generation is made slow legitimately: batches of one, and long answers (``ignore_eos``, a large
``max_tokens``: about 0.8 s each on 2 CPU cores), so each case has a window to act in.
"""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from sluice.serving import ServingHandle
from tests.serving.conftest import Registry, registry, tiny_models  # noqa: F401  (fixtures)
from tests.serving.slow_generation import LONG, SHORT, metrics, post, wait_for

MODEL = "disconnect-model"
CANCELLED = 'sluice_serving_requests_cancelled_total{{stage="{}"}}'
BATCHES = "sluice_serving_batch_size_count"


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]  # noqa: F811
    registry.register(MODEL, [1])
    config = registry.config(MODEL, tmp_path_factory.mktemp("disconnect-state"), max_batch_size=1,
                             max_queued_requests=4, max_tokens_limit=480)
    with ServingHandle(config) as handle:
        handle.wait_until_serving("1")
        yield handle


def send_and_keep_open(url: str, body: dict) -> socket.socket:
    """A client that sent its whole request and has not read the answer yet."""
    address = urlsplit(url)
    payload = json.dumps(body).encode()
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (address.netloc.encode(), len(payload), payload))
    return sock


def count(url: str, name: str) -> float:
    return metrics(url).get(name, 0.0)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_running_generation_stops_when_its_client_disconnects(server: ServingHandle, stream: bool) -> None:
    url, cancelled = server.url, CANCELLED.format("running")
    before = metrics(url)
    client = send_and_keep_open(url, {**LONG, "stream": stream})
    wait_for(lambda: count(url, BATCHES) > before[BATCHES], "the request started generating")
    if stream:
        assert client.recv(4096).startswith(b"HTTP/1.1 200"), "the stream should have begun"
    client.close()
    # counted only when the engine drops the row before its 480 tokens: generation stopped early
    wait_for(lambda: count(url, cancelled) == before[cancelled] + 1, "the generation was cancelled")
    assert post(url, SHORT).status_code == 200  # the engine serves the next request
    assert count(url, "sluice_serving_completion_tokens_total") - before["sluice_serving_completion_tokens_total"] \
        <= SHORT["max_tokens"], "the cancelled request's tokens were counted as an answer"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_waiting_request_leaves_the_queue_when_its_client_disconnects(server: ServingHandle,
                                                                        stream: bool) -> None:
    url, cancelled = server.url, CANCELLED.format("queued")
    before = metrics(url)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(post, url, LONG)  # holds the only batch slot …
        wait_for(lambda: count(url, BATCHES) > before[BATCHES], "the first request started generating")
        waiting = pool.submit(post, url, LONG)  # … and this one waits behind it, ahead of the client
        wait_for(lambda: count(url, "vllm:num_requests_waiting") == 1, "the second request queued")
        client = send_and_keep_open(url, {**LONG, "stream": stream})
        wait_for(lambda: count(url, "vllm:num_requests_waiting") == 2, "the client's request queued")
        client.close()
        wait_for(lambda: count(url, cancelled) == before[cancelled] + 1, "the waiting request was cancelled")
        # it left the queue while the requests ahead of it were still there, not when its turn came
        assert count(url, "vllm:num_requests_waiting") <= 1
        assert not waiting.done(), "it left the queue only when its turn came, after the request ahead of it"
        assert running.result().status_code == 200 and waiting.result().status_code == 200
    assert count(url, BATCHES) - before[BATCHES] == 2, "the cancelled request must never be generated"
