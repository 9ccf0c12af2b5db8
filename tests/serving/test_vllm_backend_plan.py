"""Backend vllm's decisions, as plain functions: what an alias move takes, which alias a request
names, the drain, and the merged /metrics. No process, no server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sluice.serving.telemetry import Telemetry
from sluice.serving.vllm.metrics import merge_metrics
from sluice.serving.vllm.plan import (
    LoadAdapter,
    Route,
    StartSet,
    StopSet,
    Switch,
    UnloadAdapter,
    Wanted,
    alias_for_model,
    plan_alias_move,
)
from sluice.serving.vllm.router import Router

BASE, OTHER_BASE = "base:sha256:aaa", "base:sha256:bbb"


def lora(version: str, base: str = BASE, alias: str = "champion") -> Wanted:
    return Wanted(alias=alias, version=version, model_dir=Path("/bases/a"), set_key=base,
                  adapter_dir=Path(f"/adapters/{version}"))


def full(version: str, alias: str = "champion") -> Wanted:
    return Wanted(alias=alias, version=version, model_dir=Path(f"/models/{version}"), set_key=f"full:{version}")


def route(version: str, set_key: str, alias: str = "champion", adapter: bool = True) -> Route:
    return Route(alias=alias, version=version, set_key=set_key, engine_model=f"m-v{version}", adapter=adapter)


def plan(current, wanted, running=(), others=()):  # type: ignore[no-untyped-def]
    return plan_alias_move(current, wanted, model_name="m", running=set(running), other_routes=list(others))


def test_first_lora_version_starts_its_base_with_lora_then_loads_and_switches() -> None:
    assert plan(None, lora("1")) == [StartSet(BASE, Path("/bases/a"), "m-base", lora=True),
                                     LoadAdapter(BASE, "m-v1", Path("/adapters/1")),
                                     Switch(route("1", BASE))]


def test_lora_move_over_the_same_base_loads_switches_then_unloads_the_old_one() -> None:
    assert plan(route("1", BASE), lora("2"), running=[BASE]) == [
        LoadAdapter(BASE, "m-v2", Path("/adapters/2")), Switch(route("2", BASE)), UnloadAdapter(BASE, "m-v1")]


def test_an_adapter_another_alias_still_serves_is_neither_loaded_twice_nor_unloaded() -> None:
    challenger = route("2", BASE, alias="challenger")
    assert plan(route("1", BASE), lora("2"), running=[BASE], others=[challenger]) == [
        Switch(route("2", BASE)), UnloadAdapter(BASE, "m-v1")]
    old_shared = route("1", BASE, alias="challenger")
    assert plan(route("1", BASE), lora("3"), running=[BASE], others=[old_shared]) == [
        LoadAdapter(BASE, "m-v3", Path("/adapters/3")), Switch(route("3", BASE))]


def test_full_fine_tune_starts_a_new_set_beside_the_old_then_switches_and_stops_the_old() -> None:
    old = route("1", "full:1", adapter=False)
    assert plan(old, full("2"), running=["full:1"]) == [
        StartSet("full:2", Path("/models/2"), "m-v2", lora=False), Switch(route("2", "full:2", adapter=False)),
        StopSet("full:1")]


def test_lora_over_another_base_stops_the_old_set_without_unloading_first() -> None:
    assert plan(route("1", BASE), lora("2", base=OTHER_BASE), running=[BASE]) == [
        StartSet(OTHER_BASE, Path("/bases/a"), "m-base", lora=True),
        LoadAdapter(OTHER_BASE, "m-v2", Path("/adapters/2")), Switch(route("2", OTHER_BASE)), StopSet(BASE)]


def test_a_set_another_alias_uses_keeps_running() -> None:
    old = route("1", "full:1", adapter=False)
    others = [route("1", "full:1", alias="challenger", adapter=False)]
    assert plan(old, full("2"), running=["full:1"], others=others)[-1] == Switch(route("2", "full:2", adapter=False))


def test_no_move_when_the_alias_already_serves_its_version() -> None:
    assert plan(route("1", BASE), lora("1"), running=[BASE]) == []


def test_which_alias_a_requests_model_names() -> None:
    routes = {"champion": route("3", BASE), "challenger": route("4", BASE, alias="challenger")}

    def alias(model):  # type: ignore[no-untyped-def]
        return alias_for_model(model, model_name="m", aliases=["champion", "challenger"], routes=routes)

    assert [alias(None), alias("m"), alias("m@challenger"), alias("models:/m@challenger"), alias("m/4"),
            alias("m/3")] == ["champion", "champion", "challenger", "challenger", "challenger", "champion"]
    assert [alias("m@nightly"), alias("m/9"), alias("other")] == [None, None, None]


def test_a_switch_is_atomic_and_the_drain_waits_for_requests_on_the_old_route() -> None:
    router = Router()
    router.switch(route("1", BASE))
    lease = router.acquire("champion")
    router.switch(route("2", BASE))
    assert router.acquire("champion").route.version == "2"  # new requests: the new route at once
    assert not router.wait_idle(BASE, "m-v1", timeout=0.05)  # the one on v1 is still running
    threading.Thread(target=lambda: (time.sleep(0.1), router.release(lease)), daemon=True).start()
    started = time.monotonic()
    assert router.wait_idle(BASE, "m-v1", timeout=5)
    assert time.monotonic() - started >= 0.05
    assert router.in_flight(BASE) == 1  # the v2 lease


def test_metrics_merge_labels_each_engines_samples_and_keeps_one_family_per_name() -> None:
    own = Telemetry("m", "champion")
    own.requests.labels("/v1/completions", "200").inc()
    engine_text = ("# HELP vllm:num_requests_running Requests running.\n# TYPE vllm:num_requests_running gauge\n"
                   'vllm:num_requests_running{model_name="m-base"} 3.0\n')
    engine_own = Telemetry("m-base", "x")
    engine_own.requests.labels("/v1/completions", "200").inc(5)
    merged = merge_metrics(own.render()[0], [("a#0", engine_text), ("a#1", engine_own.render()[0].decode())]).decode()
    assert 'vllm:num_requests_running{model_name="m-base",replica="a#0"} 3.0' in merged
    assert 'sluice_serving_requests_total{endpoint="/v1/completions",status="200"} 1.0' in merged
    assert 'sluice_serving_requests_total{endpoint="/v1/completions",replica="a#1",status="200"} 5.0' in merged
    assert merged.count("# TYPE sluice_serving_requests_total counter") == 1
