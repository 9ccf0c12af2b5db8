"""Canary and shadow rollout on the vLLM front door: the built-in engine's split (share tag, stable hash of
``user``) routes a default-model request to @challenger's adapter on the engines; under rollout shadow the
champion answers and @challenger's adapter answers a copy in the background, logged and never returned.
Real MLflow store, real ``sluice serve`` over the stand-in engine processes
(``python -m sluice.serving.engine_server``), real sockets; the plan's removal step as a plain function."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sluice.core.config import PromotionConfig, SluiceConfig
from sluice.core.lineage import CANARY_SHARE, FlowRun
from sluice.core.promotion.aliases import apply_promotion
from sluice.core.promotion.canary_traffic import canary_records
from sluice.core.promotion.rollout import start_canary
from sluice.core.promotion.shadow import shadow_pairs
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.tracking import tracking_target
from sluice.serving import ServingHandle
from sluice.serving.vllm.plan import (
    Route,
    StopSet,
    UnloadAdapter,
    Unroute,
    plan_alias_removal,
)
from sluice.serving.vllm.router import NoRoute, Router
from tests.serving.conftest import API_KEY, Registry
from tests.serving.lora_fixtures import log_lora_version
from tests.serving.test_shadow_rollout import build_nan_adapter
from tests.serving.test_vllm_backend import engine_models, vllm_config, wait_for

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]
USERS = [f"user-{i}" for i in range(8)]


# ------------------------------------------------------------------ the plan (no process)


def test_a_deleted_challenger_is_unrouted_then_its_adapter_unloaded_unless_the_champion_serves_it() -> None:
    champion = Route("champion", "1", "base:a", "m-v1", adapter=True)
    challenger = Route("challenger", "2", "base:a", "m-v2", adapter=True)
    assert plan_alias_removal(challenger, other_routes=[champion, challenger]) == [
        Unroute("challenger"), UnloadAdapter("base:a", "m-v2")]  # withdrawn
    promoted = Route("champion", "2", "base:a", "m-v2", adapter=True)
    assert plan_alias_removal(challenger, other_routes=[promoted]) == [Unroute("challenger")]  # promoted: kept
    own_set = Route("challenger", "3", "full:3", "m-v3", adapter=False)
    assert plan_alias_removal(own_set, other_routes=[champion]) == [Unroute("challenger"), StopSet("full:3")]

    router = Router()
    router.switch(challenger)
    assert router.remove("challenger") == challenger and router.routes() == {}
    with pytest.raises(NoRoute):
        router.acquire("challenger")


# ------------------------------------------------------------------ on the front door


def rollout_config(registry: Registry, model: str, state_dir: Path, rollout: str) -> SluiceConfig:
    config = vllm_config(registry, model, state_dir, vllm_replicas=1, extra_aliases=["challenger"],
                         watch_seconds=0.3)
    return config.model_copy(update={"promotion": PromotionConfig(
        rollout=rollout, min_metrics={}, max_regression={}, must_beat_base_model=[])})


@contextlib.contextmanager
def serving(config: SluiceConfig, challenger: str) -> Iterator[ServingHandle]:
    """``sluice serve`` with backend vllm, once its engines are healthy and @challenger is routed."""
    server = ServingHandle(config, api_keys=[API_KEY]).start()
    try:
        wait_for(lambda: httpx.get(f"{server.url}/health").status_code == 200, "engines healthy", timeout=180)
        wait_for(lambda: routed_version(server, "challenger") == challenger, f"@challenger on version {challenger}")
        yield server
    finally:
        server.stop()


def routed_version(server: ServingHandle, alias: str) -> str | None:
    route = server.state.router.routes().get(alias)
    return route.version if route else None


def ask(url: str, model: str | None, user: str, **extra: object) -> httpx.Response:
    body: dict[str, object] = {"messages": CHAT, "max_tokens": 6, "temperature": 0, "user": user, **extra}
    if model is not None:
        body["model"] = model
    return httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=body, timeout=120)


def direct_text(server: ServingHandle, engine_model: str, **extra: object) -> str:
    """The engine's own greedy answer with ``engine_model`` (an adapter's name), past the front door."""
    (replica,) = next(iter(server.state.follower.sets.values())).replicas
    body = {"messages": CHAT, "max_tokens": 6, "temperature": 0, "model": engine_model, **extra}
    answer = httpx.post(f"{replica.url}/v1/chat/completions", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["choices"][0]["message"]["content"])


def log_rows(state_dir: Path) -> list[dict]:
    path = state_dir / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def text_of(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.mark.slow
def test_canary_sends_the_share_to_the_challengers_adapter_and_share_0_or_a_withdrawal_sends_none(
        registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path], tmp_path: Path) -> None:
    model, state_dir = "canary-vllm", tmp_path / "state"
    for seed in (11, 12):  # versions 1 (champion) and 2 (challenger): adapters over one base
        log_lora_version(registry, model, tiny_models[1], lora_adapters[seed])
    client = registry.client()
    client.set_registered_model_alias(model, "champion", "1")
    client.set_registered_model_alias(model, "challenger", "2")
    client.set_model_version_tag(model, "2", CANARY_SHARE, "1.0")
    since = datetime.now(UTC)
    with serving(rollout_config(registry, model, state_dir, "canary"), challenger="2") as server:
        assert engine_models(next(iter(server.state.follower.sets.values())).replicas[0].url) >= {
            "canary-vllm-v1", "canary-vllm-v2"}  # @challenger's adapter is loaded on the replica
        champion_text, challenger_text = direct_text(server, "canary-vllm-v1"), direct_text(server, "canary-vllm-v2")
        assert champion_text != challenger_text
        for requested in (None, model, f"{model}@champion"):  # the default model, however named: all to the share
            for user in USERS[:3]:
                answer = ask(server.url, requested, user)
                assert answer.status_code == 200, answer.text
                assert (answer.headers["X-Sluice-Model-Version"], text_of(answer)) == ("2", challenger_text)
        assert ask(server.url, f"{model}/1", USERS[0]).headers["X-Sluice-Model-Version"] == "1"  # named: no split
        too_long = ask(server.url, model, USERS[0], messages=[{"role": "user", "content": "sluice " * 3000}])
        assert too_long.status_code == 400 and too_long.headers["X-Sluice-Model-Version"] == "2"  # the engine's 400

        client.set_model_version_tag(model, "2", CANARY_SHARE, "0")  # re-read within watch_seconds
        wait_for(lambda: ask(server.url, model, USERS[0]).headers["X-Sluice-Model-Version"] == "1", "share 0 seen")
        unsplit = [ask(server.url, model, user) for user in USERS]
        assert {(a.headers["X-Sluice-Model-Version"], text_of(a)) for a in unsplit} == {("1", champion_text)}

        client.set_model_version_tag(model, "2", CANARY_SHARE, "1.0")
        client.delete_registered_model_alias(model, "challenger")  # withdrawn: its adapter goes
        assert server.reload() == "1"
        assert routed_version(server, "challenger") is None
        assert "canary-vllm-v2" not in engine_models(next(iter(server.state.follower.sets.values())).replicas[0].url)
        assert {ask(server.url, model, u).headers["X-Sluice-Model-Version"] for u in USERS} == {"1"}

    rows = [r for r in log_rows(state_dir) if r.get("status") == 200]
    split = [r for r in rows if r.get("canary")]  # the 9 above, and those sent before the new share was read
    assert len(split) >= 9 and {(r["alias"], r["model_version"], r["backend"]) for r in split} == {
        ("challenger", "2", "vllm")}
    assert [(r["alias"], r["canary"]) for r in rows[9:10]] == [(None, False)]  # canary-vllm/1 named
    assert {(r["alias"], r["canary"], r["model_version"]) for r in rows[-17:]} == {("champion", False, "1")}
    rejected = next(r for r in log_rows(state_dir) if r.get("status") == 400)
    assert (rejected["alias"], rejected["canary"], rejected["model_version"]) == ("challenger", True, "2")
    sides = canary_records(state_dir / "requests.jsonl", since, {"challenger": "2", "champion": "1"})
    assert (len(sides["challenger"]), len(sides["champion"])) == (len(split) + 1, 0)  # read alike by watch-canary


@pytest.mark.slow
def test_shadow_answers_with_the_champion_logs_the_challengers_copy_and_a_failing_challenger_fails_no_one(
        registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path], tmp_path: Path) -> None:
    model, state_dir = "shadow-vllm", tmp_path / "state"
    broken = build_nan_adapter(lora_adapters[12], tmp_path / "nan")
    for adapter in (lora_adapters[11], lora_adapters[12], broken):  # 1 champion, 2 good, 3 NaN weights
        log_lora_version(registry, model, tiny_models[1], adapter)
    config = rollout_config(registry, model, state_dir, "shadow")
    models = ModelRegistry(tracking_target(config.tracking), model)
    apply_promotion(models, "1", {"summary": "the first champion"}, FlowRun())
    start_canary(models, "2", 1.0, {"summary": "version 2 shadows @champion"}, FlowRun())
    since = datetime.now(UTC)
    with serving(config, challenger="2") as server:
        champion_text, challenger_text = direct_text(server, "shadow-vllm-v1"), direct_text(server, "shadow-vllm-v2")
        whole = ask(server.url, model, USERS[0])
        streamed = ask(server.url, model, USERS[1], stream=True)
        assert (whole.status_code, whole.headers["X-Sluice-Model-Version"]) == (200, "1")
        assert text_of(whole) == champion_text != challenger_text  # the client gets the champion, only
        assert streamed.headers["X-Sluice-Model-Version"] == "1" and streamed.text.rstrip().endswith("[DONE]")
        wait_for(lambda: len([r for r in log_rows(state_dir) if r.get("shadow")]) == 2, "two shadow lines")

        start_canary(models, "3", 1.0, {"summary": "version 3 shadows @champion"}, FlowRun())
        assert server.reload() == "1"
        wait_for(lambda: routed_version(server, "challenger") == "3", "@challenger on version 3")
        sampled = [ask(server.url, model, user, temperature=0.9, seed=7) for user in USERS[:2]]  # NaN: cannot sample
        assert [(a.status_code, a.headers["X-Sluice-Model-Version"]) for a in sampled] == [(200, "1")] * 2
        assert all(a.json()["choices"][0]["message"]["content"] is not None for a in sampled)
        wait_for(lambda: len([r for r in log_rows(state_dir) if r.get("shadow")]) == 4, "four shadow lines")

    rows = log_rows(state_dir)
    served = [r for r in rows if not r.get("shadow")]
    shadows = [r for r in rows if r.get("shadow")]
    assert [(r["status"], r["model_version"], r["alias"], r["canary"]) for r in served] == [
        (200, "1", "champion", False)] * 4
    assert sorted(r["shadows"] for r in shadows) == sorted(r["id"] for r in served)  # each copies one answer
    assert [(r["model_version"], r["alias"], r["status"]) for r in shadows] == [
        ("2", "challenger", 200), ("2", "challenger", 200), ("3", "challenger", 500), ("3", "challenger", 500)]
    by_answer = {r["shadows"]: r for r in shadows}
    assert all(r["prompt"] == CHAT for r in shadows)  # the prompt it answered, as the built-in engine logs it
    assert by_answer[whole.json()["id"]]["completion"] == challenger_text
    assert "probability tensor" in shadows[2]["error"]["message"]
    assert shadow_pairs(state_dir / "requests.jsonl", since, "2", "1")[0] == 0  # the watch flow pairs them
    pairs = shadow_pairs(state_dir / "requests.jsonl", since, "2", "1")[1]
    assert [(p.champion, p.challenger) for p in pairs] == [(champion_text, challenger_text)] * 2
    assert shadow_pairs(state_dir / "requests.jsonl", since, "3", "1")[0] == 2
