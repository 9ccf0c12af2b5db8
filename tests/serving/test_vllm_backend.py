"""Backend vllm end to end: ``sluice serve`` as the front door over engine processes that follow
the aliases. The engines are the stand-in, the built-in engine served the vLLM way
(``python -m sluice.serving.engine_server``): real processes, sockets, registry and models; real
vLLM is checked only on a GPU machine (benchmarks/gpu_vllm_check.sh)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from sluice.serving import ServingHandle
from sluice.serving.app import create_app
from sluice.serving.server import ServingError
from tests.serving.conftest import API_KEY, Registry
from tests.serving.load import Load

AUTH = {"Authorization": f"Bearer {API_KEY}"}
STAND_IN = [sys.executable, "-m", "sluice.serving.engine_server"]
CHAT = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]


def wait_for(condition, what: str, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def adapters(registry: Registry, tiny_models: dict[int, Path], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Two LoRA adapters over tiny model 1, each logged as a LoRA training run (adapter, base, fingerprint)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sluice.core.config import TrackingConfig
    from sluice.core.models.base_model import base_model_fingerprint
    from sluice.core.registry.tracking import ensure_experiment, tracking_target

    base = tiny_models[1]
    experiment = ensure_experiment(tracking_target(TrackingConfig(embedded_dir=registry.store_dir)), "serving-tests")
    client, runs = registry.client(), {}
    for seed in (11, 12):
        folder = tmp_path_factory.mktemp(f"adapter-{seed}")
        torch.manual_seed(seed)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                               LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"],
                                          init_lora_weights=False))  # random B: each adapter answers differently
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(base).save_pretrained(folder)
        run = client.create_run(experiment)
        for key, value in {"training.finetune": "lora", "base_model": str(base),
                           "base_model.fingerprint": base_model_fingerprint(str(base))}.items():
            client.log_param(run.info.run_id, key, value)
        client.log_artifacts(run.info.run_id, str(folder), "adapter")
        client.log_artifacts(run.info.run_id, str(base), "model")
        client.set_terminated(run.info.run_id)
        runs[seed] = (f"{run.info.artifact_uri}/model", run.info.run_id)
    return runs


def register(registry: Registry, name: str, sources: list[tuple[str, str]]) -> None:
    client = registry.client()
    client.create_registered_model(name)
    for source, run_id in sources:
        client.create_model_version(name, source=source, run_id=run_id)
    client.set_registered_model_alias(name, "champion", "1")


def vllm_config(registry: Registry, name: str, state_dir: Path, **serving: object):  # type: ignore[no-untyped-def]
    return registry.config(name, state_dir, backend="vllm", vllm_command=STAND_IN, vllm_start_timeout_s=120,
                           max_tokens_limit=512, **serving)


def engine_models(url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}


class LongStream(threading.Thread):
    """One long streamed completion; ``first_byte`` is set once it is in flight, ``ended`` when it is done."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.first_byte, self.ended, self.ok = url, threading.Event(), 0.0, False

    def run(self) -> None:
        body = {"prompt": "The sluice at Elmbridge", "max_tokens": 250, "ignore_eos": True, "temperature": 0,
                "stream": True}
        with httpx.stream("POST", f"{self.url}/v1/completions", headers=AUTH, json=body, timeout=120) as response:
            lines = []
            for line in response.iter_lines():
                self.first_byte.set()
                lines.append(line)
        self.ended, self.ok = time.monotonic(), response.status_code == 200 and "data: [DONE]" in lines

    def __enter__(self) -> LongStream:
        self.start()
        assert self.first_byte.wait(60), "the long request never started"
        return self

    def __exit__(self, *exc: object) -> None:
        self.join(120)


def test_a_missing_engine_command_is_a_clear_error(registry: Registry, tmp_path: Path) -> None:
    config = registry.config("any-model", tmp_path / "state", backend="vllm", vllm_command=["no-such-vllm", "serve"])
    with pytest.raises(ServingError, match=r"serving\.vllm_command .*'no-such-vllm' is not an executable") as refused:
        create_app(config)
    assert "sluicegate[vllm]" in str(refused.value) and "serving.backend=transformers" in str(refused.value)


@pytest.mark.slow
def test_lora_engines_stream_restart_with_their_adapter_and_move_the_alias_without_a_failure(
        registry: Registry, adapters: dict[int, tuple[str, str]], tmp_path: Path) -> None:
    register(registry, "lora-vllm", [adapters[11], adapters[12]])
    config = vllm_config(registry, "lora-vllm", tmp_path / "state", vllm_replicas=2)
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        wait_for(lambda: httpx.get(f"{server.url}/health").status_code == 200, "engines healthy")
        sets = server.state.follower.sets
        (lora_set,) = sets.values()
        replicas = lora_set.replicas
        assert lora_set.lora and all(engine_models(r.url) >= {"lora-vllm-v1"} for r in replicas)

        # a stream is passed on as it is generated: the first event long before the last
        body = {"prompt": "The sluice at Elmbridge", "max_tokens": 300, "ignore_eos": True, "temperature": 0}
        started, arrivals, texts = time.monotonic(), [], []
        with httpx.stream("POST", f"{server.url}/v1/completions", headers=AUTH, json={**body, "stream": True},
                          timeout=120) as streamed:
            assert streamed.status_code == 200 and streamed.headers["X-Sluice-Model-Version"] == "1"
            for line in streamed.iter_lines():
                if line.startswith("data: {"):
                    arrivals.append(time.monotonic() - started)
                    texts.append("".join(c["text"] for c in json.loads(line[6:])["choices"]))
        assert len(arrivals) > 50 and arrivals[0] < 0.5 * arrivals[-1], (arrivals[0], arrivals[-1])
        whole = httpx.post(f"{server.url}/v1/completions", headers=AUTH, json=body, timeout=120).json()
        direct = httpx.post(f"{replicas[1].url}/v1/completions", json={**body, "model": "lora-vllm-v1"},
                            timeout=120).json()
        assert "".join(texts) == whole["choices"][0]["text"] == direct["choices"][0]["text"]

        # /metrics: the front door's counters and each engine's samples, labelled by replica
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'sluice_serving_requests_total{endpoint="/v1/completions",status="200"} 2.0' in metrics
        assert all(f'replica="{r.name}"' in metrics for r in replicas)

        # a replica killed mid-run comes back with the alias's adapter
        killed_pid = replicas[0].process.pid
        os.kill(killed_pid, signal.SIGKILL)
        wait_for(lambda: replicas[0].restarts == 1 and replicas[0].healthy, "replica 0 restarted")
        assert replicas[0].process.pid != killed_pid and "lora-vllm-v1" in engine_models(replicas[0].url)

        # the LoRA alias move under load: load into every replica, switch, unload the old one
        with Load(server.url, clients=4, max_tokens=6) as load:
            wait_for(lambda: load.count("1") >= 8, "answers from version 1")
            with LongStream(server.url) as long_request:  # on version 1 while the alias moves
                registry.client().set_registered_model_alias("lora-vllm", "champion", "2")
                assert server.reload() == "2"
                reloaded = time.monotonic()
            assert long_request.ok and long_request.ended <= reloaded, "v1 is unloaded only once drained"
            wait_for(lambda: load.count("2", after=reloaded) >= 8, "answers from version 2")
        assert [engine_models(r.url) & {"lora-vllm-v1", "lora-vllm-v2"} for r in replicas] == [{"lora-vllm-v2"}] * 2
        assert list(server.state.follower.sets.values()) == [lora_set]  # the same engines, no restart
        pids = [r.process.pid for r in replicas]

    assert load.failures == []
    texts_by_version = {v: {r["text"] for r in load.results if r["version"] == v} for v in ("1", "2")}
    assert all(len(t) == 1 for t in texts_by_version.values()) and texts_by_version["1"] != texts_by_version["2"]
    assert all(r.process.poll() is not None for r in replicas), f"engines {pids} must be stopped with the server"
    log_rows = [json.loads(line) for line in (tmp_path / "state" / "requests.jsonl").read_text().splitlines()]
    assert {row["model_version"] for row in log_rows} == {"1", "2"}
    assert all(row["backend"] == "vllm" for row in log_rows)


@pytest.mark.slow
def test_full_fine_tune_move_starts_new_engines_switches_and_stops_the_old(registry: Registry,
                                                                           tmp_path: Path) -> None:
    registry.register("full-vllm", [1, 2], champion=1)
    config = vllm_config(registry, "full-vllm", tmp_path / "state", vllm_replicas=1)
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        wait_for(lambda: httpx.get(f"{server.url}/health").status_code == 200, "engines healthy")
        (old_set,) = server.state.follower.sets.values()
        assert old_set.key == "full:1" and not old_set.lora

        # the front door's auth and limits hold before anything reaches an engine
        chat = {"messages": CHAT, "max_tokens": 2}
        assert httpx.post(f"{server.url}/v1/chat/completions", json=chat).status_code == 401
        too_long = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, json={**chat, "max_tokens": 10_000})
        assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "max_tokens"
        unknown = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, json={**chat, "model": "other"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"

        # PII is redacted in the request log, and feedback finds the answer by its id
        pii = [{"role": "user", "content": "Mail jane.doe@example.com about the sluice"}]
        answer = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, json={"messages": pii,
                                                                                    "max_tokens": 3}, timeout=60)
        assert answer.status_code == 200 and answer.headers["X-Sluice-Model-Version"] == "1"
        rated = httpx.post(f"{server.url}/v1/feedback", headers=AUTH, json={"response_id": answer.json()["id"],
                                                                             "rating": 5})
        assert rated.status_code == 201
        logged = (tmp_path / "state" / "requests.jsonl").read_text()
        assert "jane.doe@example.com" not in logged and answer.json()["id"] in logged

        with Load(server.url, clients=4, max_tokens=6) as load:
            wait_for(lambda: load.count("1") >= 8, "answers from version 1")
            with LongStream(server.url) as long_request:  # on the old engines while the alias moves
                registry.set_champion("full-vllm", 2)
                assert server.reload() == "2"
                reloaded = time.monotonic()
            assert long_request.ok and long_request.ended <= reloaded, "the old engines stop only once drained"
            wait_for(lambda: load.count("2", after=reloaded) >= 8, "answers from version 2")
        (new_set,) = server.state.follower.sets.values()
        assert new_set.key == "full:2" and new_set is not old_set
        assert all(r.process.poll() is not None for r in old_set.replicas), "the old engines must be stopped"
    assert load.failures == []
    assert {r["version"] for r in load.results} == {"1", "2"}
