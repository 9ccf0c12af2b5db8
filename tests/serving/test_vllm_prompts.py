"""The vLLM front door answers with the linked system prompt of the version each route serves, as the built-in
engine does (tests/serving/test_shadow_prompts.py): under ``promotion.rollout: shadow`` the client's answer is
made with @champion's system prompt, the shadow copy with @challenger's, a request naming @challenger (the
route the canary's split takes too) with @challenger's, and a chat with its own system turn keeps it. Real
MLflow store and prompt registry, real ``sluice serve`` over the stand-in engine processes, real sockets."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sluice.core.lineage import FlowRun
from sluice.core.promotion.aliases import apply_promotion
from sluice.core.promotion.rollout import start_canary
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.tracking import tracking_target
from tests.serving.conftest import Registry
from tests.serving.lora_fixtures import log_lora_version
from tests.serving.test_shadow_prompts import (
    CHALLENGER_SYSTEM,
    CHAMPION_SYSTEM,
    OWN_SYSTEM,
    USER,
)
from tests.serving.test_shadow_prompts import _link_system_prompt as link_system_prompt
from tests.serving.test_shadow_prompts import _prompt_tokens as prompt_tokens
from tests.serving.test_vllm_backend import wait_for
from tests.serving.test_vllm_rollout import AUTH, log_rows, rollout_config, serving

MODEL = "prompts-vllm"
AS_CHAMPION = [{"role": "system", "content": CHAMPION_SYSTEM}, *USER]
AS_CHALLENGER = [{"role": "system", "content": CHALLENGER_SYSTEM}, *USER]


def _chat(url: str, model: str, messages: list[dict[str, str]]) -> httpx.Response:
    response = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, timeout=120,
                          json={"model": model, "messages": messages, "max_tokens": 3, "temperature": 0})
    assert response.status_code == 200, response.text
    return response


@pytest.mark.slow
def test_each_route_answers_with_its_versions_linked_system_prompt_and_a_clients_own_system_turn_stays(
        registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    state_dir = tmp_path / "state"
    for adapter in (lora_adapters[11], lora_adapters[12]):  # 1 champion, 2 challenger: adapters over one base
        log_lora_version(registry, MODEL, tiny_models[1], adapter)
    config = rollout_config(registry, MODEL, state_dir, "shadow")
    models = ModelRegistry(tracking_target(config.tracking), MODEL)
    link_system_prompt(models, "1", CHAMPION_SYSTEM)
    link_system_prompt(models, "2", CHALLENGER_SYSTEM)
    apply_promotion(models, "1", {"summary": "the first champion"}, FlowRun())
    start_canary(models, "2", 1.0, {"summary": "version 2 shadows @champion"}, FlowRun())
    tokens = AutoTokenizer.from_pretrained(tiny_models[1])
    with serving(config, challenger="2") as server:
        answered = _chat(server.url, MODEL, USER)
        own = _chat(server.url, MODEL, OWN_SYSTEM)
        challenger = _chat(server.url, f"{MODEL}@challenger", USER)
        wait_for(lambda: len([r for r in log_rows(state_dir) if r.get("shadow")]) == 2, "two shadow lines")

    assert [r.headers["X-Sluice-Model-Version"] for r in (answered, own, challenger)] == ["1", "1", "2"]
    assert answered.json()["usage"]["prompt_tokens"] == prompt_tokens(tokens, AS_CHAMPION)
    assert own.json()["usage"]["prompt_tokens"] == prompt_tokens(tokens, OWN_SYSTEM)
    assert challenger.json()["usage"]["prompt_tokens"] == prompt_tokens(tokens, AS_CHALLENGER)
    rows = log_rows(state_dir)
    served = {r["id"]: r for r in rows if not r.get("shadow")}  # the log shows what the engine was sent
    assert [served[r.json()["id"]]["prompt"] for r in (answered, own, challenger)] == [
        AS_CHAMPION, OWN_SYSTEM, AS_CHALLENGER]
    shadows = {r["shadows"]: r for r in rows if r.get("shadow")}
    copy, own_copy = shadows[answered.json()["id"]], shadows[own.json()["id"]]
    assert (copy["status"], copy["model_version"], copy["prompt"]) == (200, "2", AS_CHALLENGER)  # not the champion's
    assert copy["prompt_tokens"] == prompt_tokens(tokens, AS_CHALLENGER)
    assert (own_copy["prompt"], own_copy["prompt_tokens"]) == (OWN_SYSTEM, prompt_tokens(tokens, OWN_SYSTEM))
