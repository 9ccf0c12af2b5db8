"""Feedback through the API, kept across a restart, and turned into rows of the
canonical preference kind."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pyarrow as pa

from sluice.serving import ServingHandle
from sluice.serving.feedback import mark_exported, preference_pairs
from tests.serving.conftest import API_KEY, Registry

AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUESTION = "When does the sluice at Elmbridge close?"


def ask(server: ServingHandle, path: str, body: dict) -> dict:
    response = httpx.post(f"{server.url}{path}", headers=AUTH, json={"temperature": 0, **body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def feedback(server: ServingHandle, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/feedback", headers=AUTH, json=body, timeout=60)


def test_feedback_survives_a_restart_and_becomes_preference_rows(registry: Registry, tmp_path: Path) -> None:
    registry.register("feedback-model", [1], champion=1)
    config = registry.config("feedback-model", tmp_path / "state")
    db = tmp_path / "state" / "feedback.db"
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        server.wait_until_serving("1")
        chat = ask(server, "/v1/chat/completions", {"messages": [
            {"role": "system", "content": "Answer from the context."}, {"role": "user", "content": QUESTION}],
            "max_tokens": 6})
        short = ask(server, "/v1/completions", {"prompt": "The keeper of Yewbrook", "max_tokens": 3})
        longer = ask(server, "/v1/completions", {"prompt": "The keeper of Yewbrook", "max_tokens": 8})
        multi_turn = ask(server, "/v1/chat/completions", {"messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": QUESTION}], "max_tokens": 3})
        stored = feedback(server, {"response_id": chat["id"], "rating": 1, "preferred": "It closes at 20:30.",
                                   "comment": "tell ops@example.com"})
        assert stored.status_code == 201, stored.text
        assert stored.json()["response_id"] == chat["id"]
        unknown = feedback(server, {"response_id": "chatcmpl-nope", "rating": 5})
        assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "response_id"
        for bad in ({"response_id": chat["id"], "rating": 0}, {"response_id": chat["id"], "rating": "5"},
                    {"response_id": chat["id"], "rating": 4.5}, {"rating": 5}):
            response = feedback(server, bad)
            assert response.status_code == 400, bad
            assert response.json()["error"]["param"] in ("rating", "response_id")

    with ServingHandle(config, api_keys=[API_KEY]) as server:  # a new server on the same state
        server.wait_until_serving("1")
        for response_id, rating, preferred in ((short["id"], 5, None), (longer["id"], 2, None),
                                               (multi_turn["id"], 5, "Something else")):
            body = {"response_id": response_id, "rating": rating, **({"preferred": preferred} if preferred else {})}
            assert feedback(server, body).status_code == 201

    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT response_id, rating, comment FROM feedback ORDER BY id").fetchall()
    assert [r[:2] for r in rows] == [(chat["id"], 1), (short["id"], 5), (longer["id"], 2), (multi_turn["id"], 5)]
    assert rows[0][2] == "tell [EMAIL]"

    short_text = short["choices"][0]["text"].strip()
    longer_text = longer["choices"][0]["text"].strip()
    assert short_text != longer_text
    pairs = preference_pairs(db)
    by_prompt = {p["prompt"]: p for p in pairs}
    assert set(by_prompt) == {QUESTION, "The keeper of Yewbrook"}  # the multi-turn chat makes no pair
    assert by_prompt[QUESTION]["chosen"] == "It closes at 20:30."
    assert by_prompt[QUESTION]["rejected"] == chat["choices"][0]["message"]["content"].strip()
    assert by_prompt["The keeper of Yewbrook"]["chosen"] == short_text
    assert by_prompt["The keeper of Yewbrook"]["rejected"] == longer_text

    # the rows read as the canonical preference kind, with no schema errors
    from sluice.core.data.readers import discover, read_source_file

    exported = tmp_path / "feedback.jsonl"
    exported.write_text("".join(json.dumps({k: v for k, v in p.items() if k != "feedback_ids"}) + "\n"
                                for p in pairs))
    table = pa.concat_tables(read_source_file(discover(str(exported))[0], "preference", "feedback", 1000))
    assert table.num_rows == 2 and table["schema_errors"].null_count == 2
    assert set(table["source"].to_pylist()) == {"sluice-serve-feedback"}

    ids = [i for p in pairs for i in p["feedback_ids"]]
    assert mark_exported(db, ids, "commit-1") == 3
    assert preference_pairs(db) == []
    assert mark_exported(db, ids, "commit-2") == 0  # exported once, to its first commit
    with sqlite3.connect(db) as connection:
        assert {r[0] for r in connection.execute("SELECT exported_commit FROM feedback")} == {"commit-1", None}
