"""LoRA adapters over one base: mixed batches, the names a request may pick, vLLM's load/unload
endpoints, and alias moves that load only the adapter (real MLflow store, real sockets, real PEFT)."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import httpx
import pytest

from sluice.serving import ServingHandle
from sluice.serving.adapters import ServedModels, Target, as_peft_model
from sluice.serving.api import ApiError
from sluice.serving.engine import Engine, Failed, Finished, GenerationRequest, load_model
from tests.serving.conftest import API_KEY, Registry
from tests.serving.lora_fixtures import log_lora_version, set_alias
from tests.serving.test_app import greedy_text
from tests.serving.test_hot_swap import Load, wait_for

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]
MODEL = "lora-model"


def submit(engine: Engine, adapter: str | None) -> queue.Queue:
    done: queue.Queue = queue.Queue()
    engine.submit(GenerationRequest(prompt=CHAT, max_tokens=8, temperature=0, stream=False, adapter=adapter,
                                    emit=lambda e: done.put(e) if isinstance(e, Finished | Failed) else None))
    return done


def answer(done: queue.Queue) -> Finished:
    event = done.get(timeout=60)
    assert isinstance(event, Finished), event
    return event


def test_a_mixed_batch_gives_each_row_what_its_adapter_gives_alone(tiny_models: dict[int, Path],
                                                                    lora_adapters: dict[int, Path]) -> None:
    engine = Engine(max_batch_size=8, batch_wait_ms=300).start()  # submitted together: one batch
    try:
        served = ServedModels(engine, max_adapters=4)
        loaded = as_peft_model(load_model("base", tiny_models[1]))
        first = served.preload_adapter(loaded, lora_adapters[11] / "adapter")
        served.install(loaded, base_name="base", base_fingerprint=None, names={})
        second = served.load_adapter(lora_adapters[12] / "adapter")  # while serving: on the worker
        rows = [None, first, second]
        alone = {adapter: answer(submit(engine, adapter)).text for adapter in rows}
        together = [answer(done) for done in [submit(engine, adapter) for adapter in rows]]
    finally:
        engine.stop()
    assert [f.batch_size for f in together] == [3, 3, 3]
    assert [f.text for f in together] == [alone[a] for a in rows]
    assert len(set(alone.values())) == 3, alone  # base and the two adapters answer differently
    for seed, adapter in ((11, first), (12, second)):  # and each as its merged model does with generate
        merged = load_model("merged", lora_adapters[seed] / "merged")
        assert alone[adapter] == greedy_text(merged, merged.encode_chat(CHAT), 8)
    assert alone[None] == greedy_text(load_model("plain", tiny_models[1]), loaded.encode_chat(CHAT), 8)


def test_an_adapter_no_name_serves_stays_while_a_request_holds_it(tiny_models: dict[int, Path],
                                                                  lora_adapters: dict[int, Path]) -> None:
    engine = Engine(max_batch_size=4, batch_wait_ms=5).start()
    try:
        served = ServedModels(engine, max_adapters=4)
        loaded = as_peft_model(load_model("base", tiny_models[1]))
        served.install(loaded, base_name="base", base_fingerprint=None, names={})
        adapter = served.load_adapter(lora_adapters[11] / "adapter")
        served.route("api", {"ft": Target(version="ft", root="", adapter=adapter, parent="base",
                                          model_version="base")})
        held = served.resolve("ft", known="ft")  # a request resolved its name (it may still be queued)
        served.route("api", {})  # the name is unloaded meanwhile
        assert adapter in served.loaded_adapters() and adapter in loaded.model.peft_config
        assert answer(submit(engine, adapter)).finish_reason == "length"  # it still generates with it
        held.release()
        wait_for(lambda: adapter not in served.loaded_adapters())  # gone once the last holder ended
        assert adapter not in loaded.model.peft_config
        with pytest.raises(ApiError, match="'ft' is not served here"):
            served.resolve("ft", known="nothing")
    finally:
        engine.stop()


def test_a_name_is_added_or_taken_out_once_under_the_lock() -> None:
    """Two load requests for one name: the second finds it served; two unloads: the second finds it gone."""
    served = ServedModels(Engine(max_batch_size=1, batch_wait_ms=1), max_adapters=4)  # never started: no adapters
    served.route("alias", {"m@champion": Target(version="1", root="")})
    ft = Target(version="ft", root="", parent="base", model_version="base")
    assert served.route_name("api", "ft", ft) is True
    assert served.route_name("api", "ft", ft) is False
    assert served.route_name("api", "m@champion", ft) is False  # taken by another group
    assert set(served.names()) == {"m@champion", "ft"} and served.routed("api") == {"ft": ft}
    assert served.route_name("api", "ft", None) is True
    assert served.route_name("api", "ft", None) is False
    assert served.route_name("api", "m@champion", None) is False  # another group's name stays
    assert set(served.names()) == {"m@champion"}


@pytest.fixture(scope="module")
def lora_server(registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path],
                tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """@champion = version 1 (adapter 11), @challenger = version 2 (adapter 12), version 3 (adapter
    13) registered but not aliased; at most 3 adapters."""
    for seed in (11, 12, 13):
        log_lora_version(registry, MODEL, tiny_models[1], lora_adapters[seed])
    set_alias(registry, MODEL, "champion", "1")
    set_alias(registry, MODEL, "challenger", "2")
    config = registry.config(MODEL, tmp_path_factory.mktemp("lora-state"), extra_aliases=["challenger"],
                             max_adapters=3)
    with ServingHandle(config, api_keys=[API_KEY]) as handle:
        handle.wait_until_serving("1")
        yield handle


def chat(url: str, model: str | None, **extra: object) -> httpx.Response:
    body = {"messages": CHAT, "max_tokens": 8, "temperature": 0, **extra}
    if model is not None:
        body["model"] = model
    return httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=body, timeout=60)


def test_requests_pick_an_alias_or_a_version_and_each_answers_as_its_adapter(
        lora_server: ServingHandle, lora_adapters: dict[int, Path]) -> None:
    expected = {}
    for version, seed in (("1", 11), ("2", 12)):
        merged = load_model(version, lora_adapters[seed] / "merged")
        expected[version] = greedy_text(merged, merged.encode_chat(CHAT), 8)
    for model, version in ((None, "1"), (MODEL, "1"), (f"{MODEL}@champion", "1"), (f"{MODEL}/1", "1"),
                           (f"{MODEL}@challenger", "2"), (f"{MODEL}/2", "2"), (f"models:/{MODEL}@challenger", "2")):
        response = chat(lora_server.url, model)
        assert response.status_code == 200, (model, response.text)
        assert response.headers["X-Sluice-Model-Version"] == version, model
        assert response.json()["choices"][0]["message"]["content"] == expected[version], model
    unknown = chat(lora_server.url, f"{MODEL}/3")  # registered, but no watched alias names it
    assert unknown.status_code == 404
    error = unknown.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert f"'{MODEL}@challenger'" in error["message"] and f"'{MODEL}/1'" in error["message"]
    metrics = httpx.get(f"{lora_server.url}/metrics").text
    assert "sluice_serving_model_swaps_total 1.0" in metrics  # one model installed: the base, both adapters over it
    assert "sluice_serving_model_version 1.0" in metrics and "sluice_serving_lora_adapters 2.0" in metrics
    for alias, version in (("champion", "1"), ("challenger", "2")):
        assert f'sluice_serving_model_info{{alias="{alias}",model="{MODEL}",version="{version}"}} 1.0' in metrics
    state_dir = Path(lora_server.state.config.serving.state_dir)
    assert not (state_dir / "models" / "1").exists()  # the merged model is never downloaded


def test_model_list_and_lora_endpoints_follow_vllm(lora_server: ServingHandle, lora_adapters: dict[int, Path],
                                                   tiny_models: dict[int, Path]) -> None:
    url, base = lora_server.url, str(tiny_models[1])
    adapter = str(lora_adapters[13] / "adapter")
    load = {"lora_name": "sql-helper", "lora_path": adapter}
    assert httpx.post(f"{url}/v1/load_lora_adapter", json=load).status_code == 401  # behind the API key
    assert httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "x"}).status_code == 401
    missing = httpx.post(f"{url}/v1/load_lora_adapter", headers=AUTH, json={"lora_name": "sql-helper"})
    assert missing.status_code == 400 and "lora_path" in missing.json()["error"]["message"]
    bad = httpx.post(f"{url}/v1/load_lora_adapter", headers=AUTH, json={"lora_name": "x", "lora_path": base})
    assert bad.status_code == 400 and "adapter_config.json" in bad.json()["error"]["message"]
    loaded = httpx.post(f"{url}/v1/load_lora_adapter", headers=AUTH, json=load)
    assert loaded.status_code == 200 and loaded.text == "Success: LoRA adapter 'sql-helper' added successfully."
    again = httpx.post(f"{url}/v1/load_lora_adapter", headers=AUTH, json=load)
    assert again.status_code == 400 and "already been loaded" in again.json()["error"]["message"]
    full = httpx.post(f"{url}/v1/load_lora_adapter", headers=AUTH, json={"lora_name": "fourth", "lora_path": adapter})
    assert full.status_code == 400 and full.json()["error"]["code"] == "too_many_adapters"  # max_adapters = 3

    cards = {c["id"]: c for c in httpx.get(f"{url}/v1/models", headers=AUTH).json()["data"]}
    assert cards[base]["parent"] is None
    assert {cards[n]["parent"] for n in (MODEL, f"{MODEL}@challenger", f"{MODEL}/2", "sql-helper")} == {base}
    assert (cards[MODEL]["version"], cards[f"{MODEL}@challenger"]["version"]) == ("1", "2")
    assert cards["sql-helper"]["root"] == adapter

    merged = load_model("3", lora_adapters[13] / "merged")
    answered = chat(url, "sql-helper")
    assert answered.status_code == 200 and answered.headers["X-Sluice-Model-Version"] == "sql-helper"
    assert answered.json()["choices"][0]["message"]["content"] == greedy_text(merged, merged.encode_chat(CHAT), 8)
    assert answered.json()["model"] == "sql-helper"

    unknown = httpx.post(f"{url}/v1/unload_lora_adapter", headers=AUTH, json={"lora_name": "nope"})
    assert unknown.status_code == 404 and "cannot be found" in unknown.json()["error"]["message"]
    assert httpx.post(f"{url}/v1/unload_lora_adapter", headers=AUTH, json={"lora_name": MODEL}).status_code == 404
    unloaded = httpx.post(f"{url}/v1/unload_lora_adapter", headers=AUTH, json={"lora_name": "sql-helper"})
    assert unloaded.status_code == 200 and unloaded.text == "Success: LoRA adapter 'sql-helper' removed successfully."
    assert chat(url, "sql-helper").status_code == 404
    state = lora_server.state
    wait_for(lambda: len(state.served.loaded_adapters()) == 2)  # champion's and challenger's
    peft_names = set(state.engine.model.model.peft_config)
    assert len(peft_names) == 3, peft_names  # the placeholder and the two aliases' adapters


def test_a_lora_alias_move_loads_only_the_adapter_and_fails_nothing_under_load(
        registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path], tmp_path: Path) -> None:
    name = "lora-move-model"
    for seed in (11, 12):
        log_lora_version(registry, name, tiny_models[1], lora_adapters[seed])
    set_alias(registry, name, "champion", "1")
    # 4 clients, 2 rows: requests wait in the queue on the old adapter while the alias moves
    config = registry.config(name, tmp_path / "state", max_batch_size=2)
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        server.wait_until_serving("1")
        state = server.state
        old_adapters = state.served.loaded_adapters()
        with Load(server.url, clients=4) as load:
            wait_for(lambda: load.count("1") >= 12)
            set_alias(registry, name, "champion", "2")
            moved_at = time.monotonic()
            assert server.reload() == "2"
            move_seconds = time.monotonic() - moved_at
            wait_for(lambda: load.count("2", after=moved_at + move_seconds) >= 12)
        wait_for(lambda: not state.served.loaded_adapters() & old_adapters)  # the old one left, once unused
        metrics = httpx.get(f"{server.url}/metrics").text
        assert "sluice_serving_model_swaps_total 1.0" in metrics  # the base stayed: only adapters moved
        assert "sluice_serving_model_version 2.0" in metrics
        assert not old_adapters & set(state.engine.model.model.peft_config)
    assert load.failures == []
    texts = {v: {r["text"] for r in load.results if r["version"] == v} for v in ("1", "2")}
    assert len(texts["1"]) == 1 and len(texts["2"]) == 1 and texts["1"] != texts["2"], texts
    for client in range(4):  # each client sees 1 … 1 then 2 … 2
        versions = [r["version"] for r in sorted(load.results, key=lambda r: r["started"]) if r["client"] == client]
        assert versions == sorted(versions), versions
    started = time.perf_counter()
    load_model("2", lora_adapters[12] / "merged")
    merged_seconds = time.perf_counter() - started
    print(f"\nLoRA alias move (adapter only, under load): {move_seconds:.3f} s; "
          f"loading the merged model instead: {merged_seconds:.3f} s")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow  # a subprocess importing torch: ~20 s on 2 cores
def test_the_engine_server_answers_like_vllm_serve(tiny_models: dict[int, Path],
                                                   lora_adapters: dict[int, Path]) -> None:
    import subprocess
    import sys

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "sluice.serving.engine_server", str(tiny_models[1]), "--port",
                                str(port), "--enable-lora", "--max-loras", "2", "--served-model-name", "tiny-base"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def healthy() -> bool:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                return httpx.get(f"{url}/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=120, every=0.2)
        body = {"model": "tiny-base", "messages": CHAT, "max_tokens": 8, "temperature": 0}
        base = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)  # no key: loopback, like vLLM
        assert base.status_code == 200, base.text
        adapter = str(lora_adapters[11] / "adapter")
        loaded = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "ft-1", "lora_path": adapter})
        assert loaded.status_code == 200, loaded.text
        assert httpx.post(f"{url}/v1/load_lora_adapter",
                          json={"lora_name": "ft-1", "lora_path": adapter}).status_code == 400
        cards = httpx.get(f"{url}/v1/models").json()["data"]
        assert [(c["id"], c["parent"]) for c in cards] == [("tiny-base", None), ("ft-1", "tiny-base")]
        tuned = httpx.post(f"{url}/v1/chat/completions", json={**body, "model": "ft-1"}, timeout=60)
        merged = load_model("m", lora_adapters[11] / "merged")
        assert tuned.json()["choices"][0]["message"]["content"] == greedy_text(merged, merged.encode_chat(CHAT), 8)
        assert tuned.json()["choices"][0]["message"]["content"] != base.json()["choices"][0]["message"]["content"]
        with httpx.stream("POST", f"{url}/v1/completions", json={"model": "ft-1", "prompt": "The sluice",
                                                                  "max_tokens": 4, "stream": True,
                                                                  "ignore_eos": True}) as streamed:
            lines = [line for line in streamed.iter_lines() if line]
        assert streamed.status_code == 200 and lines[-1] == "data: [DONE]" and len(lines) >= 2
        assert httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "ft-1"}).status_code == 200
        assert httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "ft-1"}).status_code == 404
        gone = httpx.post(f"{url}/v1/chat/completions", json={**body, "model": "ft-1"}, timeout=60)
        assert gone.status_code == 404 and "'tiny-base'" in gone.json()["error"]["message"]
        assert "sluice_serving_requests_total" in httpx.get(f"{url}/metrics").text
    finally:
        process.terminate()
        assert process.wait(30) == 0


def test_a_lora_version_whose_base_cannot_be_had_is_served_merged(
        registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    name = "lora-fallback-model"
    log_lora_version(registry, name, tiny_models[1], lora_adapters[11], base_model=str(tmp_path / "gone-base"))
    source, run_id = registry.sources[2]  # a full fine-tune as @challenger: not servable beside it
    registry.client().create_model_version(name, source=source, run_id=run_id)
    set_alias(registry, name, "champion", "1")
    set_alias(registry, name, "challenger", "2")
    config = registry.config(name, tmp_path / "state", extra_aliases=["challenger"])
    with caplog.at_level("WARNING", logger="sluice.serving"), ServingHandle(config, api_keys=[API_KEY]) as server:
        server.wait_until_serving("1")
        response = chat(server.url, name)
        health = httpx.get(f"{server.url}/health").json()
        challenger = chat(server.url, f"{name}@challenger")
        peft = hasattr(server.state.engine.model.model, "peft_config")
    assert "cannot be had here" in caplog.text and "serving the merged model instead" in caplog.text
    assert not peft and response.status_code == 200 and response.headers["X-Sluice-Model-Version"] == "1"
    merged = load_model("1", lora_adapters[11] / "merged")
    assert response.json()["choices"][0]["message"]["content"] == greedy_text(merged, merged.encode_chat(CHAT), 8)
    assert health["aliases"]["challenger"]["version"] == "2" and health["aliases"]["challenger"]["served"] is None
    assert "full fine-tune" in health["aliases"]["challenger"]["error"]
    assert challenger.status_code == 404 and f"'{name}@champion'" in challenger.json()["error"]["message"]


@pytest.mark.slow
def test_a_lora_alias_move_over_smollm2_loads_only_the_adapter(registry: Registry, smollm2: Path,
                                                                tmp_path: Path) -> None:
    """The real model: the base loads once; moving @champion to another LoRA version loads only its
    adapter (seconds printed beside downloading and loading its merged model instead)."""
    from tests.serving.lora_fixtures import build_adapter

    name = "smollm2-lora-model"
    for seed in (21, 22):  # only version 2's merged model is saved: the comparison downloads and loads it
        adapter = build_adapter(smollm2, tmp_path / f"lora-{seed}", seed, merged=seed == 22)
        log_lora_version(registry, name, smollm2, adapter)
    set_alias(registry, name, "champion", "1")
    config = registry.config(name, tmp_path / "state", watch_seconds=600)
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        started = time.monotonic()
        server.wait_until_serving("1", timeout=300)
        first_load = time.monotonic() - started
        before = chat(server.url, name)
        set_alias(registry, name, "champion", "2")
        started = time.monotonic()
        assert server.reload() == "2"
        adapter_move = time.monotonic() - started
        after = chat(server.url, name)
        assert "sluice_serving_model_swaps_total 1.0" in httpx.get(f"{server.url}/metrics").text  # the base stayed
    assert before.headers["X-Sluice-Model-Version"] == "1" and after.headers["X-Sluice-Model-Version"] == "2"
    assert before.json()["choices"][0]["message"]["content"] != after.json()["choices"][0]["message"]["content"]
    from sluice.core.registry.client import ModelRegistry
    from sluice.core.registry.tracking import tracking_target

    started = time.monotonic()
    merged = load_model("2", ModelRegistry(tracking_target(config.tracking), name).download("2", tmp_path / "m"))
    merged_load = time.monotonic() - started
    expected = greedy_text(merged, merged.encode_chat(CHAT), 8)
    assert after.json()["choices"][0]["message"]["content"] == expected
    print(f"\nSmolLM2 LoRA champion: first load (base + adapter) {first_load:.2f} s; alias move, adapter only: "
          f"{adapter_move:.2f} s; the merged model instead (download + load): {merged_load:.2f} s")


def test_the_engine_server_has_the_lora_routes_only_with_enable_lora(tiny_models: dict[int, Path],
                                                                     tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from sluice.serving.engine_server import build_app

    def status(lora: bool, path: str) -> int:  # the app's lifespan (the engine) is not started: routing only
        app = build_app(tiny_models[1], name="m", enable_lora=lora, max_loras=2, state_dir=tmp_path / str(lora))
        return TestClient(app).post(path, json={}).status_code

    for path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
        assert status(True, path) == 400  # there: a body without lora_name
        assert status(False, path) == 404  # vLLM without --enable-lora has no such route
