"""The HTTP server on a real socket, serving a version from a real MLflow
registry: OpenAI shapes, streaming, limits, auth, metrics and the request log."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from sluice.serving import ServingHandle
from sluice.serving.engine import load_model
from tests.serving.conftest import API_KEY, Registry

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MODEL = "app-model"
LIMITS = {"max_prompt_tokens": 64, "max_tokens_limit": 32, "default_max_tokens": 5, "max_body_bytes": 4096}


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    registry.register(MODEL, [1])
    config = registry.config(MODEL, tmp_path_factory.mktemp("app-state"), **LIMITS)
    with ServingHandle(config, api_keys=[API_KEY]) as handle:
        handle.wait_until_serving("1")
        yield handle


@pytest.fixture(scope="module")
def client(server: ServingHandle):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def reference(tiny_models: dict[int, Path]):  # type: ignore[no-untyped-def]
    """Version 1's model loaded directly, to say what the server should answer."""
    return load_model("1", tiny_models[1])


def greedy_text(model, prompt_ids: list[int], max_new_tokens: int) -> str:  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        out = model.model.generate(torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=model.pad_id)
    return model.decode([t for t in out[0, len(prompt_ids):].tolist() if t not in model.eos_ids])


def sse_events(response: httpx.Response) -> list[dict | str]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line.removeprefix("data: ")
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


CHAT = [{"role": "user", "content": "When does the sluice at Elmbridge close?"}]


def test_chat_completion_is_openai_shaped_and_greedy_matches_the_model(client: httpx.Client, reference) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/chat/completions", json={"model": MODEL, "messages": CHAT, "max_tokens": 8,
                                                         "temperature": 0})
    assert response.status_code == 200, response.text
    assert response.headers["X-Sluice-Model-Version"] == "1"
    body = response.json()
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) > 20
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    prompt_ids = reference.encode_chat(CHAT)
    assert choice["message"]["content"] == greedy_text(reference, prompt_ids, 8)
    assert body["usage"]["prompt_tokens"] == len(prompt_ids)
    assert choice["finish_reason"] == ("length" if body["usage"]["completion_tokens"] == 8 else "stop")
    assert body["usage"]["total_tokens"] == len(prompt_ids) + body["usage"]["completion_tokens"]


def test_default_max_tokens_and_n_other_than_one(client: httpx.Client) -> None:
    body = client.post("/v1/chat/completions", json={"messages": CHAT, "temperature": 0}).json()
    assert body["usage"]["completion_tokens"] <= LIMITS["default_max_tokens"]
    response = client.post("/v1/chat/completions", json={"messages": CHAT, "n": 2})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"


def test_chat_stream_sends_openai_chunks_that_add_up_to_the_answer(client: httpx.Client) -> None:
    request = {"messages": CHAT, "max_tokens": 8, "temperature": 0}
    whole = client.post("/v1/chat/completions", json=request).json()
    with client.stream("POST", "/v1/chat/completions",
                       json={**request, "stream": True, "stream_options": {"include_usage": True}}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["X-Sluice-Model-Version"] == "1"
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if isinstance(e, dict)]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finals = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finals == [whole["choices"][0]["finish_reason"]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


def test_completions_plain_and_streamed(client: httpx.Client, reference) -> None:  # type: ignore[no-untyped-def]
    prompt = "The sluice at Elmbridge"
    response = client.post("/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 6,
                                                    "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert body["choices"][0]["text"] == greedy_text(reference, reference.encode_text(prompt), 6)
    with client.stream("POST", "/v1/completions", json={"prompt": [prompt], "max_tokens": 6, "temperature": 0,
                                                        "stream": True}) as streamed:
        events = sse_events(streamed)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == body["choices"][0]["text"]
    assert events[-2]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]


def test_stop_sequences_cut_the_answer(client: httpx.Client) -> None:
    request = {"messages": CHAT, "max_tokens": 16, "temperature": 0}
    full = client.post("/v1/chat/completions", json=request).json()["choices"][0]["message"]["content"]
    stop = full[5:8]
    cut = client.post("/v1/chat/completions", json={**request, "stop": stop}).json()["choices"][0]
    assert cut["message"]["content"] == full[:full.index(stop)]
    assert cut["finish_reason"] == "stop"


def test_models_health_and_metrics(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    # each name a request may use for the merged champion: no parent (it is no adapter), version 1
    assert [(m["id"], m["parent"], m["version"]) for m in models["data"]] == [
        (MODEL, None, "1"), (f"{MODEL}/1", None, "1"), (f"{MODEL}@champion", None, "1")]
    health = httpx.get(f"{client.base_url}/health")  # open: no key
    assert health.status_code == 200 and health.json()["version"] == "1"
    client.post("/v1/chat/completions", json={"messages": CHAT, "max_tokens": 2})
    metrics = httpx.get(f"{client.base_url}/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'sluice_serving_requests_total{endpoint="/v1/chat/completions",status="200"}' in text
    assert 'sluice_serving_request_seconds_bucket{endpoint="/v1/chat/completions"' in text
    assert "sluice_serving_model_version 1.0" in text
    assert f'sluice_serving_model_info{{alias="champion",model="{MODEL}",version="1"}} 1.0' in text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["sluice_serving_prompt_tokens_total"] > 0
    assert values["sluice_serving_completion_tokens_total"] > 0
    assert values["sluice_serving_batch_size_count"] >= 1


@pytest.mark.parametrize(("request_body", "status", "param", "words"), [
    ({"messages": [{"role": "user", "content": "sluice " * 200}]}, 400, "messages", ["tokens", "64"]),
    ({"messages": CHAT, "max_tokens": 33}, 400, "max_tokens", ["33", "32"]),
    ({"messages": CHAT, "max_completion_tokens": 99}, 400, "max_completion_tokens", ["99"]),
    ({"model": MODEL}, 400, "messages", ["messages", "required"]),
    ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role", ["role"]),
    ({"messages": CHAT, "temperature": 3}, 400, "temperature", ["temperature"]),
    ({"messages": CHAT, "model": "gpt-4"}, 404, "model", ["gpt-4", MODEL]),
])
def test_invalid_requests_get_openai_errors(client: httpx.Client, request_body: dict, status: int, param: str,
                                            words: list[str]) -> None:
    response = client.post("/v1/chat/completions", json=request_body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] and set(error) == {"message", "type", "param", "code"}
    assert all(word in error["message"] for word in words), error["message"]


def test_malformed_json_and_oversized_bodies(client: httpx.Client) -> None:
    json_type = {"content-type": "application/json"}
    broken = client.post("/v1/chat/completions", content=b'{"messages": [', headers=json_type)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    not_object = client.post("/v1/completions", json=["a"])
    assert not_object.status_code == 400 and "JSON object" in not_object.json()["error"]["message"]
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    declared = client.post("/v1/chat/completions", json=big)
    assert declared.status_code == 413 and "4096" in declared.json()["error"]["message"]

    def chunks():  # no Content-Length: the bytes actually read are counted
        payload = json.dumps(big).encode()
        for i in range(0, len(payload), 1000):
            yield payload[i:i + 1000]

    chunked = client.post("/v1/chat/completions", content=chunks(), headers=json_type)
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413


def test_api_keys_guard_v1_and_admin_but_not_health_or_metrics(server: ServingHandle) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        for method, path in (("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("POST", "/admin/reload"),
                             ("POST", "/v1/feedback")):
            response = httpx.request(method, f"{server.url}{path}", headers=headers, json={"messages": CHAT})
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 200
    ok = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, json={"messages": CHAT, "max_tokens": 1})
    assert ok.status_code == 200


def test_request_log_has_one_redacted_line_per_request(client: httpx.Client, server: ServingHandle) -> None:
    email = "jane.doe@example.com"
    messages = [{"role": "user", "content": f"Please write to {email} about the sluice."}]
    body = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 4}).json()
    rejected = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 999})
    assert rejected.status_code == 400
    log_file = Path(server.config.serving.state_dir) / "requests.jsonl"
    text = log_file.read_text()
    assert email not in text
    lines = [json.loads(line) for line in text.splitlines()]
    mine = [line for line in lines if line["id"] == body["id"]]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["model_version"] == "1" and entry["status"] == 200
    assert "[EMAIL]" in entry["prompt"][0]["content"]
    assert entry["prompt_tokens"] == body["usage"]["prompt_tokens"]
    assert entry["completion_tokens"] == body["usage"]["completion_tokens"]
    assert entry["latency_ms"] > 0 and entry["completion"] == body["choices"][0]["message"]["content"]
    assert lines[-1]["status"] == 400 and lines[-1]["error"]["param"] == "max_tokens"
