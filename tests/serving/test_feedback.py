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
    by_prompt = {json.dumps(p["prompt"]): p for p in pairs}
    # a chat's prompt is its messages as sent (system and earlier turns kept), a completion's its text
    chat_prompt = [{"role": "system", "content": "Answer from the context."}, {"role": "user", "content": QUESTION}]
    multi_turn_prompt = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                         {"role": "user", "content": QUESTION}]
    assert set(by_prompt) == {json.dumps(chat_prompt), json.dumps(multi_turn_prompt),
                              json.dumps("The keeper of Yewbrook")}
    assert by_prompt[json.dumps(chat_prompt)]["chosen"] == "It closes at 20:30."
    assert by_prompt[json.dumps(chat_prompt)]["rejected"] == chat["choices"][0]["message"]["content"].strip()
    assert by_prompt[json.dumps(multi_turn_prompt)]["chosen"] == "Something else"
    assert by_prompt[json.dumps("The keeper of Yewbrook")]["chosen"] == short_text
    assert by_prompt[json.dumps("The keeper of Yewbrook")]["rejected"] == longer_text

    # the rows read as the canonical preference kind, with no schema errors
    from sluice.core.data.readers import discover, read_source_file

    exported = tmp_path / "feedback.jsonl"
    exported.write_text("".join(json.dumps({k: v for k, v in p.items() if k != "feedback_ids"}) + "\n"
                                for p in pairs))
    table = pa.concat_tables(read_source_file(discover(str(exported))[0], "preference", "feedback", 1000))
    assert table.num_rows == 3 and table["schema_errors"].null_count == 3
    assert set(table["source"].to_pylist()) == {"sluice-serve-feedback"}
    assert sorted(table["prompt"].to_pylist(), key=len) == [
        [{"role": "user", "content": "The keeper of Yewbrook"}], chat_prompt, multi_turn_prompt]

    ids = [i for p in pairs for i in p["feedback_ids"]]
    assert mark_exported(db, ids, "commit-1") == 4
    assert preference_pairs(db) == []
    assert mark_exported(db, ids, "commit-2") == 0  # exported once, to its first commit
    with sqlite3.connect(db) as connection:
        assert {r[0] for r in connection.execute("SELECT exported_commit FROM feedback")} == {"commit-1"}


def test_a_chat_keeps_its_turns_as_the_prompt_unless_it_does_not_end_with_the_user(tmp_path: Path) -> None:
    from sluice.serving.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "feedback.db")
    chats = {"chatcmpl-asks": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                               {"role": "user", "content": QUESTION}],
             "chatcmpl-prefilled": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "It"}]}
    for response_id, prompt in chats.items():
        store.record_response(response_id, endpoint="chat", model_version="1", prompt=prompt,
                              completion="closes late.", finish_reason="stop")
        store.add_feedback(response_id, rating=1, preferred="It closes at 20:30.")
    store.close()
    assert [p["prompt"] for p in preference_pairs(tmp_path / "feedback.db")] == [chats["chatcmpl-asks"]]


def test_the_latest_rating_of_an_answer_decides_which_side_it_is_on(tmp_path: Path) -> None:
    from sluice.serving.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "feedback.db")
    prompt = [{"role": "user", "content": QUESTION}]
    for response_id, completion in (("chatcmpl-a", "At 20:30."), ("chatcmpl-b", "Never.")):
        store.record_response(response_id, endpoint="chat", model_version="1", prompt=prompt,
                              completion=completion, finish_reason="stop")
    first_a = store.add_feedback("chatcmpl-a", rating=5)
    rating_b = store.add_feedback("chatcmpl-b", rating=3)
    before = preference_pairs(tmp_path / "feedback.db")
    assert [(p["chosen"], p["rejected"]) for p in before] == [("At 20:30.", "Never.")]

    second_a = store.add_feedback("chatcmpl-a", rating=1)  # the user changed their mind about A
    store.close()
    pairs = preference_pairs(tmp_path / "feedback.db")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("Never.", "At 20:30.")]
    assert pairs[0]["feedback_ids"] == sorted([first_a, rating_b, second_a])  # A's old rating is used up too
