"""Shadow rollout end to end: under ``promotion.rollout: shadow`` a real server answers every request with
@champion and has @challenger answer a copy in the background, logged with ``shadow: true`` and never
returned (a challenger whose generation fails does not fail the request); the watch flow (under Prefect's
test harness) compares the shadow answers with the champion's (MiniLM), withdraws a challenger that answers
empty and promotes one identical to the champion, with the evidence in the tags, the ledger and
`sluice registry history` (real MLflow store, real sockets, LoRA adapters over one tiny base)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from flows.rollout import watch_canary
from sluice.core.config import PromotionConfig, SluiceConfig
from sluice.core.lineage import FlowRun
from sluice.core.promotion.aliases import apply_promotion
from sluice.core.promotion.rollout import start_canary
from sluice.core.promotion.shadow import ShadowResult
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.tracking import tracking_target
from sluice.serving import ServingHandle
from sluice.serving.engine import load_model
from sluice.shell.cli.model_commands import registry_history
from tests.serving.canary_fixtures import build_silent_adapter
from tests.serving.conftest import API_KEY, Registry
from tests.serving.lora_fixtures import log_lora_version
from tests.serving.test_app import greedy_text
from tests.serving.test_hot_swap import wait_for

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]


def shadow_config(registry: Registry, model: str, state_dir: Path) -> SluiceConfig:
    config = registry.config(model, state_dir, extra_aliases=["challenger"], watch_seconds=0.3)
    return config.model_copy(update={"promotion": PromotionConfig(
        rollout="shadow", min_metrics={}, max_regression={}, must_beat_base_model=[],
        shadow={"sample": 1.0, "window_seconds": 3600, "min_requests": 6, "early_withdraw_after": None})})


def put_on_trial(models: ModelRegistry, version: str) -> None:
    start_canary(models, version, 1.0, {}, FlowRun(), rollout="shadow")


def build_nan_adapter(adapter_dir: Path, out_dir: Path) -> Path:
    """A copy of a LoRA adapter whose weights are NaN: sampling from it raises, as a broken fine-tune does."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter_dir / "adapter", out_dir / "adapter")
    weights_file = out_dir / "adapter" / "adapter_model.safetensors"
    weights = load_file(weights_file)
    save_file({name: tensor.fill_(float("nan")) for name, tensor in weights.items()}, weights_file)
    return out_dir


def log_rows(state_dir: Path) -> list[dict]:
    path = state_dir / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def shadow_rows(state_dir: Path) -> list[dict]:
    return [r for r in log_rows(state_dir) if r.get("shadow")]


def wait_for_shadows(state_dir: Path, count: int) -> None:
    wait_for(lambda: len(shadow_rows(state_dir)) >= count, timeout=120)


def ask(url: str, model: str, user: str, stream: bool = False, temperature: float = 0.0) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", headers=AUTH, timeout=120,
                      json={"model": model, "messages": CHAT, "max_tokens": 6, "temperature": temperature,
                            "seed": 7, "user": user, "stream": stream})


def test_the_client_gets_the_champion_and_a_failing_shadow_is_only_logged(
        registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path], tmp_path: Path) -> None:
    model = "shadow-serving-model"
    broken = build_nan_adapter(lora_adapters[12], tmp_path / "nan")
    for adapter in (lora_adapters[11], broken):  # versions 1 (champion), 2 (broken challenger)
        log_lora_version(registry, model, tiny_models[1], adapter)
    state_dir = tmp_path / "state"
    config = shadow_config(registry, model, state_dir)
    models = ModelRegistry(tracking_target(config.tracking), model)
    apply_promotion(models, "1", {"summary": "the first champion"}, FlowRun())
    put_on_trial(models, "2")
    champion = load_model("1", lora_adapters[11] / "merged")
    expected = greedy_text(champion, champion.encode_chat(CHAT), 6)
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        server.wait_until_serving("1")
        wait_for(lambda: server.state.watcher.served_version("challenger") == "2", timeout=120)
        answers = []
        for i in range(4):  # one at a time: a batch that fails fails every row in it (the engine's rule)
            response = ask(server.url, model, f"user-{i}", stream=i == 3, temperature=0.0 if i < 2 else 0.9)
            assert response.status_code == 200, response.text
            assert response.headers["X-Sluice-Model-Version"] == "1"
            answers.append(response)
            wait_for_shadows(state_dir, i + 1)
        assert [a.json()["choices"][0]["message"]["content"] for a in answers[:2]] == [expected, expected]
        assert answers[3].text.rstrip().endswith("data: [DONE]") and '"error"' not in answers[3].text
    rows = log_rows(state_dir)
    served = [r for r in rows if not r.get("shadow")]
    shadows = [r for r in rows if r.get("shadow")]
    assert [(r["status"], r["model_version"], r["alias"]) for r in served] == [(200, "1", "champion")] * 4
    assert [r["shadows"] for r in shadows] == [r["id"] for r in served]  # each copies one champion answer
    assert {(r["model_version"], r["alias"]) for r in shadows} == {("2", "challenger")}
    assert [r["status"] for r in shadows[2:]] == [500, 500]  # sampling from NaN weights raises
    assert "probability tensor" in shadows[2]["error"]["message"]


@pytest.mark.usefixtures("prefect_harness")
def test_an_empty_shadow_is_withdrawn_and_an_identical_one_is_promoted(
        registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    model = "shadow-rollout-model"
    silent = build_silent_adapter(tiny_models[1], tmp_path / "silent")
    for adapter in (lora_adapters[11], silent, lora_adapters[11]):  # 1 champion, 2 silent, 3 the champion again
        log_lora_version(registry, model, tiny_models[1], adapter)
    state_dir = tmp_path / "state"
    config = shadow_config(registry, model, state_dir)
    models = ModelRegistry(tracking_target(config.tracking), model)
    apply_promotion(models, "1", {"summary": "the first champion"}, FlowRun())
    client = MlflowClient(registry.tracking_uri)
    users = [f"user-{i}" for i in range(6)]
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        monkeypatch.setenv("SLUICE_SERVING_URL", server.url)
        monkeypatch.setenv("SLUICE_SERVING_API_KEYS", API_KEY)
        server.wait_until_serving("1")
        for challenger, verdict in (("2", "withdraw"), ("3", "promote")):
            put_on_trial(models, challenger)
            wait_for(lambda v=challenger: server.state.watcher.served_version("challenger") == v, timeout=120)
            shadowed = len(shadow_rows(state_dir))
            assert {ask(server.url, model, u).headers["X-Sluice-Model-Version"] for u in users} == {"1"}
            wait_for_shadows(state_dir, shadowed + len(users))
            result = watch_canary(config=config)
            assert result.verdict is not None and result.verdict.outcome == verdict, result.message
        assert models.alias_version("champion") == "3" and models.alias_version("challenger") is None
        assert [tuple(m) for m in result.moves] == [("previous", None, "1"), ("champion", "1", "3"),
                                                    ("challenger", "3", None)]
        after = watch_canary(config=config)  # nothing on trial: said as a shadow, reported as one
        assert isinstance(after, ShadowResult) and after.message == "no @challenger: no shadow to watch"
    tags = client.get_model_version(model, "2").tags
    assert (tags["sluice.decision"], tags["sluice.canary.verdict"]) == ("withdrawn", "withdraw")
    assert "empty answers 100.0 % against 0.0 %" in tags["sluice.canary.evidence"]
    assert "semantic similarity to @champion's answers 1.000" in client.get_model_version(model, "3").tags[
        "sluice.canary.evidence"]
    registry_history(overrides=[f"tracking.embedded_dir={config.tracking.embedded_dir}",
                                f"registry.model_name={model}"])
    history = capsys.readouterr().out
    print(history)
    assert "withdraw version 2 (shadow against champion version 1" in history
    assert "promote version 3 (shadow against champion version 1" in history and "every bound held" in history
