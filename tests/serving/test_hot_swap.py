"""The server follows its alias: it starts with no champion and waits for one,
and swaps versions under load without failing or dropping a request."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from sluice.serving import ServingHandle
from tests.serving.conftest import API_KEY, Registry
from tests.serving.load import Load

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]


def wait_for(condition, timeout: float = 30, every: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true after {timeout} s")


def test_starts_without_a_champion_and_the_watcher_serves_the_first_one(registry: Registry,
                                                                          tmp_path: Path) -> None:
    config = registry.config("late-model", tmp_path / "state", watch_seconds=0.2)
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        health = httpx.get(f"{server.url}/health")
        assert health.status_code == 503
        assert "no version of models:/late-model@champion exists yet" in health.json()["reason"]
        refused = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, json={"messages": CHAT})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "model_not_ready"
        assert "late-model@champion" in refused.json()["error"]["message"]
        registry.register("late-model", [2], champion=1)  # the watcher finds it on its own
        wait_for(lambda: httpx.get(f"{server.url}/health").status_code == 200)
        answer = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH,
                            json={"messages": CHAT, "max_tokens": 2})
        assert answer.status_code == 200 and answer.headers["X-Sluice-Model-Version"] == "1"
        assert (tmp_path / "state" / "models" / "1" / "config.json").is_file()


def test_hot_swap_under_load_fails_nothing_and_switches_the_version(registry: Registry, tmp_path: Path) -> None:
    registry.register("swap-model", [1, 2], champion=1)
    config = registry.config("swap-model", tmp_path / "state", max_batch_size=4)
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        server.wait_until_serving("1")
        with Load(server.url, clients=4) as load:
            wait_for(lambda: load.count("1") >= 12)
            registry.set_champion("swap-model", 2)
            reload_started = time.monotonic()
            assert server.reload() == "2"
            reload_ended = time.monotonic()
            wait_for(lambda: load.count("2", after=reload_ended) >= 12)
        metrics = httpx.get(f"{server.url}/metrics").text
    assert load.failures == []
    results = load.results
    during = [r for r in results if r["started"] < reload_ended and r["ended"] > reload_started]
    assert len(during) >= 2, "requests must have been in flight while the new version loaded"
    assert all(r["version"] in ("1", "2") for r in results)
    assert all(r["version"] == "1" for r in results if r["ended"] < reload_started)
    assert all(r["version"] == "2" for r in results if r["started"] > reload_ended)
    for client in range(4):  # each client sees 1 … 1 then 2 … 2, never back
        versions = [r["version"] for r in sorted(results, key=lambda r: r["started"]) if r["client"] == client]
        assert versions == sorted(versions), versions
    texts = {v: {r["text"] for r in results if r["version"] == v} for v in ("1", "2")}
    assert len(texts["1"]) == 1 and len(texts["2"]) == 1, texts  # greedy: one answer per model, streamed or not
    assert texts["1"] != texts["2"], "version 2 must be the other model, not just another header"
    assert "sluice_serving_model_version 2.0" in metrics
    assert "sluice_serving_model_swaps_total 2.0" in metrics


def test_a_version_that_cannot_load_leaves_the_old_one_serving(registry: Registry, tmp_path: Path) -> None:
    from sluice.core.config import TrackingConfig
    from sluice.core.registry.tracking import ensure_experiment, tracking_target

    registry.register("broken-model", [1], champion=1)
    client = registry.client()
    run = client.create_run(ensure_experiment(tracking_target(TrackingConfig(embedded_dir=registry.store_dir)),
                                              "serving-tests"))
    client.log_text(run.info.run_id, "not a model", "model/README.txt")
    client.create_model_version("broken-model", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    config = registry.config("broken-model", tmp_path / "state")
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        server.wait_until_serving("1")
        registry.set_champion("broken-model", 2)
        with pytest.raises(RuntimeError, match=r"no config\.json"):
            server.reload()
        health = httpx.get(f"{server.url}/health").json()
        assert health["version"] == "1" and "no config.json" in health["last_error"]
        assert "still serving version 1" in health["warning"]
        answer = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, json={"messages": CHAT,
                                                                                    "max_tokens": 2})
        assert answer.status_code == 200 and answer.headers["X-Sluice-Model-Version"] == "1"


def test_a_steady_alias_is_loaded_once_however_often_it_is_checked(registry: Registry, tmp_path: Path) -> None:
    # version "12": each registry lookup returns a new string object (short ones like "1" are shared
    # by CPython), so this checks that versions are compared by value
    registry.register("steady-model", [1] * 12, champion=12)
    config = registry.config("steady-model", tmp_path / "state", watch_seconds=0.05)
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        server.wait_until_serving("12")
        for _ in range(3):  # a reload finds the alias where it was
            assert server.reload() == "12"
        status = server.state.watcher.status
        checked = status.last_check
        wait_for(lambda: status.last_check is not None and checked is not None and status.last_check > checked)
        metrics = httpx.get(f"{server.url}/metrics").text
    assert "sluice_serving_model_swaps_total 1.0" in metrics
    assert sorted(p.name for p in (tmp_path / "state" / "models").iterdir()) == ["12"]
