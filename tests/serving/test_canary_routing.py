"""Canary routing on a real server: requests for the default model go to @challenger for the share its
registry tag names, by a stable hash of the user; the request log and X-Sluice-Model-Version say which
alias and version answered; a changed tag changes the split without a restart, and a restarted server
keeps each user on its side (real MLflow store, real sockets, two LoRA adapters over one base)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from sluice.core.lineage import CANARY_SHARE
from sluice.serving import ServingHandle
from sluice.serving.canary import in_challenger_share
from sluice.serving.engine import load_model
from tests.serving.conftest import API_KEY, Registry
from tests.serving.lora_fixtures import log_lora_version, set_alias
from tests.serving.test_app import greedy_text
from tests.serving.test_hot_swap import wait_for

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]
MODEL = "canary-routing-model"
USERS = [f"user-{i}" for i in range(16)]


def chat(url: str, model: str | None, user: str | None = None, **extra: object) -> httpx.Response:
    body: dict[str, object] = {"messages": CHAT, "max_tokens": 2, "temperature": 0, **extra}  # extra may replace them
    if model is not None:
        body["model"] = model
    if user is not None:
        body["user"] = user
    return httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=body, timeout=60)


def side_of(user: str) -> str:
    return "2" if in_challenger_share(user, 0.5, "2") else "1"


@pytest.fixture(scope="module")
def canary_registry(registry: Registry, tiny_models: dict[int, Path], lora_adapters: dict[int, Path]) -> Registry:
    """@champion = version 1 (adapter 11), @challenger = version 2 (adapter 12) with a share of 0.5."""
    for seed in (11, 12):
        log_lora_version(registry, MODEL, tiny_models[1], lora_adapters[seed])
    set_alias(registry, MODEL, "champion", "1")
    set_alias(registry, MODEL, "challenger", "2")
    registry.client().set_model_version_tag(MODEL, "2", CANARY_SHARE, "0.5")
    return registry


def serve(registry: Registry, state_dir: Path) -> ServingHandle:
    config = registry.config(MODEL, state_dir, extra_aliases=["challenger"], watch_seconds=0.3)
    handle = ServingHandle(config, api_keys=[API_KEY]).start()
    handle.wait_until_serving("1")
    wait_for(lambda: handle.state.watcher.served_version("challenger") == "2")
    return handle


def log_rows(state_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (state_dir / "requests.jsonl").read_text().splitlines()]


def test_the_default_model_is_split_by_user_and_the_log_says_who_answered(
        canary_registry: Registry, lora_adapters: dict[int, Path], tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    server = serve(canary_registry, state_dir)
    try:
        assert {side_of(u) for u in USERS} == {"1", "2"}  # both sides drawn
        for model, users in ((None, USERS), (MODEL, USERS[:6]), (f"{MODEL}@champion", USERS[:6])):  # the default
            for user in users:
                response = chat(server.url, model, user)
                assert response.status_code == 200, response.text
                assert response.headers["X-Sluice-Model-Version"] == side_of(user), (model, user)
        texts = {side_of(u): chat(server.url, MODEL, u).json()["choices"][0]["message"]["content"] for u in USERS}
        for version, seed in (("1", 11), ("2", 12)):  # each side answers as its own adapter
            merged = load_model(version, lora_adapters[seed] / "merged")
            assert texts[version] == greedy_text(merged, merged.encode_chat(CHAT), 2)
        anonymous = {chat(server.url, MODEL).headers["X-Sluice-Model-Version"] for _ in range(12)}
        assert anonymous == {"1", "2"}  # no user: each request draws by its own id
        challenger_user = next(u for u in USERS if side_of(u) == "2")
        for model, version in ((f"{MODEL}/1", "1"), (f"{MODEL}@challenger", "2"), (f"{MODEL}/2", "2")):
            assert chat(server.url, model, challenger_user).headers["X-Sluice-Model-Version"] == version
        assert chat(server.url, f"{MODEL}/1", challenger_user).headers["X-Sluice-Model-Version"] == "1"
        long_prompt = [{"role": "user", "content": "sluice " * 3000}]  # over max_prompt_tokens: after routing
        too_long = chat(server.url, MODEL, challenger_user, messages=long_prompt)
        assert too_long.status_code == 400 and too_long.headers["X-Sluice-Model-Version"] == "2"
    finally:
        server.stop()
    rows = log_rows(state_dir)
    split = [r for r in rows if r.get("canary")]
    assert len(split) == len(USERS) + 12 + len(USERS) + 12 + 1
    assert all(r["alias"] == ("challenger" if r["model_version"] == "2" else "champion") for r in split)
    named = [r for r in rows if r.get("canary") is False]
    assert [(r["alias"], r["model_version"]) for r in named] == [(None, "1"), ("challenger", "2"), (None, "2"),
                                                                  (None, "1")]
    rejected = rows[-1]
    assert rejected["status"] == 400 and (rejected["alias"], rejected["model_version"]) == ("challenger", "2")


def test_the_share_tag_changes_the_split_without_a_restart_and_a_restart_keeps_each_user_on_its_side(
        canary_registry: Registry, tmp_path: Path) -> None:
    server = serve(canary_registry, tmp_path / "state")
    try:
        before = {u: chat(server.url, MODEL, u).headers["X-Sluice-Model-Version"] for u in USERS}
        assert before == {u: side_of(u) for u in USERS}
        canary_registry.client().set_model_version_tag(MODEL, "2", CANARY_SHARE, "0")
        wait_for(lambda: {chat(server.url, MODEL, u).headers["X-Sluice-Model-Version"] for u in USERS} == {"1"},
                 timeout=30, every=0.3)
        assert chat(server.url, f"{MODEL}@challenger").headers["X-Sluice-Model-Version"] == "2"  # still named
    finally:
        server.stop()
        canary_registry.client().set_model_version_tag(MODEL, "2", CANARY_SHARE, "0.5")
    restarted = serve(canary_registry, tmp_path / "state")
    try:
        after = {u: chat(restarted.url, MODEL, u).headers["X-Sluice-Model-Version"] for u in USERS}
    finally:
        restarted.stop()
    assert after == before
