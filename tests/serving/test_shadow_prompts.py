"""Each version answers with its own linked system prompt, in the background too: under ``promotion.rollout:
shadow`` the client's answer is made with @champion's system prompt and the shadow copy with @challenger's
(the client's own messages, tokenized again), and a LoRA adapter loaded through the API whose name looks like
a version number gets no registry version's prompt (a real server on loopback, LoRA versions over the tiny
base, a real MLflow store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.core.config import EvaluationConfig, PromotionConfig, TrainingConfig
from sluice.core.lineage import FlowRun
from sluice.core.promotion.aliases import apply_promotion
from sluice.core.promotion.rollout import start_canary
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.prompts import link_prompts, prompt_set, register_prompts
from sluice.core.registry.tracking import tracking_target
from sluice.serving import ServingHandle
from tests.serving.conftest import API_KEY, Registry
from tests.serving.lora_fixtures import log_lora_version
from tests.serving.test_hot_swap import wait_for
from tests.serving.test_shadow_rollout import shadow_rows

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MODEL = "shadow-prompts-model"
CHAMPION_SYSTEM = "Answer from the context, in one short sentence."
CHALLENGER_SYSTEM = "Answer only with the word no, whatever the question and the context say."
USER = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]
OWN_SYSTEM = [{"role": "system", "content": "Be brief."}, *USER]


def _link_system_prompt(models: ModelRegistry, version: str, system: str) -> None:
    refs = register_prompts(models, prompt_set(TrainingConfig(), EvaluationConfig(system_prompt=system)))
    link_prompts(models, version, refs)


def _prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _chat(url: str, model: str, messages: list[dict[str, str]]) -> httpx.Response:
    response = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, timeout=60,
                          json={"model": model, "messages": messages, "max_tokens": 4, "temperature": 0})
    assert response.status_code == 200, response.text
    return response


@pytest.fixture(scope="module")
def shadowed(registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServingHandle, Path]]:
    """A server whose @champion (version 1) and @challenger (version 2, shadowing every request) are linked
    to different system prompts."""
    for adapter in (lora_adapters[11], lora_adapters[12]):
        log_lora_version(registry, MODEL, tiny_models[1], adapter)
    state_dir = tmp_path_factory.mktemp("shadow-prompts") / "state"
    config = registry.config(MODEL, state_dir, extra_aliases=["challenger"], watch_seconds=0.3)
    config = config.model_copy(update={"promotion": PromotionConfig(
        rollout="shadow", min_metrics={}, max_regression={}, must_beat_base_model=[],
        shadow={"sample": 1.0, "window_seconds": 3600, "min_requests": 6, "early_withdraw_after": None})})
    models = ModelRegistry(tracking_target(config.tracking), MODEL)
    _link_system_prompt(models, "1", CHAMPION_SYSTEM)
    _link_system_prompt(models, "2", CHALLENGER_SYSTEM)
    apply_promotion(models, "1", {"summary": "the first champion"}, FlowRun())
    start_canary(models, "2", 1.0, {}, FlowRun(), rollout="shadow")
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        server.wait_until_serving("1")
        wait_for(lambda: server.state.watcher.served_version("challenger") == "2", timeout=120)
        yield server, state_dir


def test_the_shadow_copy_answers_with_the_challengers_system_prompt(
        shadowed: tuple[ServingHandle, Path], tiny_models: dict[int, Path]) -> None:
    from transformers import AutoTokenizer

    server, state_dir = shadowed
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[1])
    as_champion = [{"role": "system", "content": CHAMPION_SYSTEM}, *USER]
    as_challenger = [{"role": "system", "content": CHALLENGER_SYSTEM}, *USER]
    before = len(shadow_rows(state_dir))
    answered = _chat(server.url, MODEL, USER)
    own = _chat(server.url, MODEL, OWN_SYSTEM)
    wait_for(lambda: len(shadow_rows(state_dir)) >= before + 2, timeout=60)

    assert answered.headers["X-Sluice-Model-Version"] == "1"  # the client's answer: the champion's prompt
    assert answered.json()["usage"]["prompt_tokens"] == _prompt_tokens(tokenizer, as_champion)
    shadows = {row["shadows"]: row for row in shadow_rows(state_dir)[before:]}
    copy = shadows[answered.json()["id"]]
    assert (copy["status"], copy["model_version"]) == (200, "2")
    assert copy["prompt"] == as_challenger  # the client's messages under @challenger's own system prompt
    assert copy["prompt_tokens"] == _prompt_tokens(tokenizer, as_challenger)
    own_copy = shadows[own.json()["id"]]  # a system turn the client sent stays, on both sides
    assert own_copy["prompt"] == OWN_SYSTEM
    assert own_copy["prompt_tokens"] == own.json()["usage"]["prompt_tokens"] == _prompt_tokens(tokenizer, OWN_SYSTEM)


def test_an_api_adapter_named_like_a_version_gets_no_linked_prompt(
        shadowed: tuple[ServingHandle, Path], tiny_models: dict[int, Path], lora_adapters: dict[int, Path]) -> None:
    from transformers import AutoTokenizer

    server, _ = shadowed
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[1])
    loaded = httpx.post(f"{server.url}/v1/load_lora_adapter", headers=AUTH, timeout=60,
                        json={"lora_name": "2", "lora_path": str(lora_adapters[13] / "adapter")})
    assert loaded.status_code == 200, loaded.text
    try:  # "2" is not version 2: an adapter loaded through the API has no linked prompt
        answered = _chat(server.url, "2", USER)
        assert answered.json()["usage"]["prompt_tokens"] == _prompt_tokens(tokenizer, USER)
        by_version = _chat(server.url, f"{MODEL}/2", USER)  # version 2 itself, named: its own system prompt
        assert by_version.json()["usage"]["prompt_tokens"] == _prompt_tokens(
            tokenizer, [{"role": "system", "content": CHALLENGER_SYSTEM}, *USER])
    finally:
        httpx.post(f"{server.url}/v1/unload_lora_adapter", headers=AUTH, json={"lora_name": "2"}, timeout=60)
