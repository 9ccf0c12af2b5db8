"""Serving answers with the prompt of the version it serves: a chat without a system turn gets the served
version's linked system prompt first (a real server on loopback, the tiny model, a real MLflow store); a chat
with its own system turn, and a version without a linked prompt, are served as sent."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from sluice.core.config import EvaluationConfig, TrainingConfig
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.prompts import link_prompts, prompt_set, register_prompts
from sluice.core.registry.tracking import tracking_target
from sluice.serving import ServingHandle
from tests.serving.conftest import API_KEY, Registry

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SYSTEM = "Answer from the context, in one short sentence, naming the sluice keeper."
USER = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]
OWN_SYSTEM = [{"role": "system", "content": "Be brief."}, *USER]


def _prompt_tokens(tokenizer, messages: list[dict[str, str]]) -> int:  # type: ignore[no-untyped-def]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _wait_until_ready(server: ServingHandle, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{server.url}/health").status_code != 200:
        assert time.monotonic() < deadline, f"not ready after {timeout} s"
        time.sleep(0.05)


def _chat(server: ServingHandle, messages: list[dict[str, str]]) -> tuple[str, int, str]:
    response = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, timeout=60,
                          json={"messages": messages, "max_tokens": 4, "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    return response.headers["X-Sluice-Model-Version"], body["usage"]["prompt_tokens"], \
        body["choices"][0]["message"]["content"]


def test_the_served_versions_system_prompt_is_prepended_only_where_it_belongs(
        registry: Registry, tiny_models: dict[int, Path], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    name = "prompted-serving"
    registry.register(name, [1, 1], champion=1)  # the same weights twice: version 1 with a prompt, 2 without
    config = registry.config(name, tmp_path / "state")
    models = ModelRegistry(tracking_target(config.tracking), name)
    refs = register_prompts(models, prompt_set(TrainingConfig(), EvaluationConfig(system_prompt=SYSTEM)))
    link_prompts(models, "1", refs)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[1])
    with_system = [{"role": "system", "content": SYSTEM}, *USER]

    with ServingHandle(config, api_keys=[API_KEY]) as server:
        _wait_until_ready(server)
        version, tokens, text = _chat(server, USER)
        assert version == "1" and tokens == _prompt_tokens(tokenizer, with_system)
        assert text == _chat(server, with_system)[2]  # greedy: the same answer as sending the prompt oneself
        assert _chat(server, OWN_SYSTEM)[1] == _prompt_tokens(tokenizer, OWN_SYSTEM)  # the client's turn stays

        registry.set_champion(name, 2)
        assert httpx.post(f"{server.url}/admin/reload", headers=AUTH, timeout=60).status_code == 200
        version, tokens, _ = _chat(server, USER)
        assert version == "2" and tokens == _prompt_tokens(tokenizer, USER)  # no linked prompt: as sent
