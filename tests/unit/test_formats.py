"""The shapes people's data comes in: every sft shape (OpenAI chat with text
parts and extra keys, ShareGPT, Alpaca, prompt/response, and CSV of each)
read the same by the vectorized and the row-by-row path, TRL's
conversational preference rows, one clear error for a file of no shape, and
fields no shape reads counted in the cleaning report — never dropped
silently."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from sluice.core.config import CleaningConfig
from sluice.core.data import readers
from sluice.core.data.cleaning.dedup import stable_ids
from sluice.core.data.contracts import load_contract
from sluice.core.data.kinds import CANONICAL, SHAPES, block_facts, rows_to_table
from sluice.core.data.prepare import prepare_batch, read_frame
from sluice.core.data.readers import InputError, SourceFile, read_source_file
from sluice.core.data.validation import validate_batch
from tests.conftest import REPO_ROOT


def _chat(user: str, assistant: str, system: str | None = None) -> list[dict]:
    turns = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _tables(path: Path, kind: str, fmt: str | None = None) -> list[pa.Table]:
    tables = list(read_source_file(SourceFile(str(path), fmt or readers.FORMATS[path.suffix]), kind, "dflt", 1000))
    assert all(t.schema == CANONICAL[kind] for t in tables)
    return tables


def _rows(tables: list[pa.Table]) -> list[dict]:
    return [row for table in tables for row in table.to_pylist()]


def _both_paths(tmp_path: Path, rows: list, kind: str, monkeypatch, *, vectorized: bool = True) -> list[dict]:
    """Read ``rows`` as JSONL (the vectorized path where it applies) and row by
    row; both must give the same rows and the same block facts."""
    calls: list[int] = []
    original = readers._jsonl_exact
    monkeypatch.setattr(readers, "_jsonl_exact", lambda *a: calls.append(1) or original(*a))
    path = _jsonl(tmp_path / "rows.jsonl", rows)
    (fast,) = _tables(path, kind)
    assert (calls == []) == vectorized  # the vectorized path was (or could not be) taken
    exact = rows_to_table([(row, i + 1) for i, row in enumerate(rows)], kind, str(path), "dflt")
    assert fast.to_pylist() == exact.to_pylist()
    assert block_facts(fast) == block_facts(exact)
    return fast.to_pylist()


def _unmapped(tmp_path: Path, rows: list, kind: str) -> dict[str, int]:
    return block_facts(_tables(_jsonl(tmp_path / "facts.jsonl", rows), kind)[0]).unmapped_fields


# ---------------------------------------------------------------------------------------------
# sft: each shape, both paths
# ---------------------------------------------------------------------------------------------


def test_openai_chats_with_text_parts_and_extra_keys(tmp_path, monkeypatch):
    rows = [
        {"messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                      {"role": "user", "content": [{"type": "text", "text": "Where is "},
                                                   {"type": "text", "text": "the weir?"}], "name": "ada"},
                      {"role": "assistant", "content": [{"type": "text", "text": "Past the mill."}]}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "And the lock?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "Upstream."}], "weight": 1}]},
    ]
    got = _both_paths(tmp_path, rows, "sft", monkeypatch)
    assert [r["messages"] for r in got] == [_chat("Where is the weir?", "Past the mill.", "Be brief."),
                                            _chat("And the lock?", "Upstream.")]
    assert all(r["schema_errors"] is None for r in got)
    assert _unmapped(tmp_path, rows, "sft") == {"messages[].name": 1, "messages[].weight": 1}


def test_openai_text_and_parts_mixed_in_one_block(tmp_path, monkeypatch):
    rows = [{"messages": [{"role": "user", "content": "plain"}, {"role": "assistant", "content": "text"}]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "in parts"}]},
                          {"role": "assistant", "content": "text"}]}]
    got = _both_paths(tmp_path, rows, "sft", monkeypatch, vectorized=False)  # pyarrow cannot type the block
    assert [r["messages"][0]["content"] for r in got] == ["plain", "in parts"]


def test_a_part_that_is_not_text_is_a_schema_error(tmp_path, monkeypatch):
    rows = [{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}},
                                                       {"type": "text", "text": "What is this?"}]},
                          {"role": "assistant", "content": "A lock."}]},
            {"messages": _chat("ok?", "ok.")}]
    got = _both_paths(tmp_path, rows, "sft", monkeypatch, vectorized=False)
    assert got[0]["messages"] is None
    assert got[0]["schema_errors"] == "messages: a content part of type 'image_url' (only text parts are read)"
    assert got[1]["schema_errors"] is None


SHAREGPT_SPEAKERS = [("human", "user"), ("user", "user"), ("Human", "user"), ("gpt", "assistant"),
                     ("assistant", "assistant"), ("chatgpt", "assistant"), ("model", "assistant"),
                     ("bard", "assistant"), ("bing", "assistant"), ("GPT", "assistant")]


def test_sharegpt_with_every_speaker_name_and_a_system_turn(tmp_path, monkeypatch):
    users = [name for name, role in SHAREGPT_SPEAKERS if role == "user"]
    assistants = [name for name, role in SHAREGPT_SPEAKERS if role == "assistant"]
    rows = []
    for i, assistant in enumerate(assistants):
        turns = [{"from": users[i % len(users)], "value": f"Question {i}?"}, {"from": assistant, "value": f"Answer {i}."}]
        if i % 2 == 0:
            turns.insert(0, {"from": "system", "value": "Answer from the context."})
        rows.append({"conversations": turns, "source": "sharegpt"})
    got = _both_paths(tmp_path, rows, "sft", monkeypatch)
    assert [r["messages"] for r in got] == [
        _chat(f"Question {i}?", f"Answer {i}.", "Answer from the context." if i % 2 == 0 else None)
        for i in range(len(assistants))]
    assert {r["source"] for r in got} == {"sharegpt"} and all(r["schema_errors"] is None for r in got)


def test_sharegpt_content_instead_of_value_and_extra_keys(tmp_path, monkeypatch):
    rows = [{"conversations": [{"from": "human", "content": "Hi?"}, {"from": "gpt", "content": "Hello.", "weight": 0}]}]
    got = _both_paths(tmp_path, rows, "sft", monkeypatch)
    assert got[0]["messages"] == _chat("Hi?", "Hello.")
    assert _unmapped(tmp_path, rows, "sft") == {"conversations[].weight": 1}


def test_an_unknown_sharegpt_speaker_is_a_schema_error_naming_it(tmp_path, monkeypatch):
    rows = [{"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]},
            {"conversations": [{"from": "human", "value": "Weather?"}, {"from": "observation", "value": "{}"}]}]
    got = _both_paths(tmp_path, rows, "sft", monkeypatch, vectorized=False)
    assert got[0]["schema_errors"] is None
    assert got[1]["messages"] is None
    assert got[1]["schema_errors"].startswith("conversations: unknown speaker from='observation'")


def test_alpaca_with_and_without_input(tmp_path, monkeypatch):
    rows = [{"instruction": "Translate to German.", "input": "sluice gate", "output": "Schleusentor"},
            {"instruction": "Name a canal.", "input": "", "output": "The Grand Union."},
            {"instruction": "Name a river.", "output": "The Thames."},
            {"instruction": "Be terse: why locks?", "input": "Boats go uphill.", "output": "Levels.",
             "system": "You are a lock keeper."}]
    got = _both_paths(tmp_path, rows, "sft", monkeypatch)
    assert [r["messages"] for r in got] == [
        _chat("Translate to German.\n\nsluice gate", "Schleusentor"),
        _chat("Name a canal.", "The Grand Union."),  # an empty input adds nothing
        _chat("Name a river.", "The Thames."),
        _chat("Be terse: why locks?\n\nBoats go uphill.", "Levels.", "You are a lock keeper.")]
    assert _unmapped(tmp_path, rows, "sft") == {}


@pytest.mark.parametrize(("prompt", "response"), [("prompt", "response"), ("question", "answer"),
                                                  ("query", "completion")])
def test_prompt_response_pairs(tmp_path, monkeypatch, prompt, response):
    rows = [{prompt: "Where is the weir?", response: "Past the mill.", "system": "Be brief."},
            {prompt: "And the lock?", response: "Upstream."}]
    got = _both_paths(tmp_path, rows, "sft", monkeypatch)
    assert [r["messages"] for r in got] == [_chat("Where is the weir?", "Past the mill.", "Be brief."),
                                            _chat("And the lock?", "Upstream.")]


def test_every_shape_in_one_file(tmp_path, monkeypatch):
    rows = [{"messages": _chat("a?", "A."), "source": "demo"},
            {"conversations": [{"from": "human", "value": "b?"}, {"from": "gpt", "value": "B."}]},
            {"instruction": "c?", "input": "more", "output": "C."},
            {"messages": _chat("d?", "D."), "conversations": [{"from": "human", "value": "x"}], "output": "x"}]
    got = _both_paths(tmp_path, rows, "sft", monkeypatch)
    assert [r["messages"] for r in got] == [_chat("a?", "A."), _chat("b?", "B."), _chat("c?\n\nmore", "C."),
                                            _chat("d?", "D.")]  # messages first, then conversations, then flat
    assert _unmapped(tmp_path, rows, "sft") == {"conversations": 1, "output": 1}

    path = tmp_path / "rows.parquet"  # the same rows from Parquet (vectorized too)
    pq.write_table(pajson.read_json(tmp_path / "rows.jsonl"), path)
    assert [r["messages"] for r in _rows(_tables(path, "sft"))] == [r["messages"] for r in got]


def _csv(path: Path, rows: list[dict]) -> Path:
    header = sorted({name for row in rows for name in row})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([json.dumps(row[n]) if isinstance(row.get(n), list) else row.get(n, "") for n in header])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


@pytest.mark.parametrize("rows", [
    [{"messages": [{"role": "user", "content": [{"type": "text", "text": "a?"}], "name": "ada"},
                   {"role": "assistant", "content": "A."}]}, {"messages": _chat("b?", "B.", "Sys.")}],
    [{"conversations": [{"from": "system", "value": "Sys."}, {"from": "human", "value": "a?"},
                        {"from": "gpt", "value": "A."}]}],
    [{"instruction": "a?", "input": "with input", "output": "A."}, {"instruction": "b?", "input": "", "output": "B."}],
    [{"prompt": "a?", "response": "A.", "system": "Sys."}, {"question": "b?", "answer": "B."}],
], ids=["openai", "sharegpt", "alpaca", "prompt-response"])
def test_csv_of_each_shape_reads_as_its_jsonl(tmp_path, rows):
    from_csv = _rows(_tables(_csv(tmp_path / "rows.csv", rows), "sft"))
    from_jsonl = _rows(_tables(_jsonl(tmp_path / "rows.jsonl", rows), "sft"))
    assert [r["messages"] for r in from_csv] == [r["messages"] for r in from_jsonl]
    assert all(r["schema_errors"] is None for r in from_csv)


def test_a_csv_preference_cell_is_a_message_list_only_when_it_is_one(tmp_path):
    row = {"prompt": "[1] Which lock opens first?", "chosen": [{"role": "assistant", "content": "East."}],
           "rejected": "[not json"}
    (got,) = _rows(_tables(_csv(tmp_path / "pref.csv", [row]), "preference"))
    assert got["prompt"] == [{"role": "user", "content": "[1] Which lock opens first?"}]
    assert (got["chosen"], got["rejected"], got["schema_errors"]) == ("East.", "[not json", None)


# ---------------------------------------------------------------------------------------------
# preference: TRL's conversational form
# ---------------------------------------------------------------------------------------------

ASK = [{"role": "system", "content": "Answer from the context."}, {"role": "user", "content": "When does it open?"}]


def _answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(("row", "prompt"), [
    ({"prompt": ASK, "chosen": _answer("At 07:30."), "rejected": _answer("Ask someone.")}, ASK),  # explicit
    ({"prompt": "When does it open?", "chosen": _answer("At 07:30."), "rejected": _answer("Ask someone.")},
     ASK[1:]),  # a text prompt is one user turn
    ({"chosen": ASK + _answer("At 07:30."), "rejected": ASK + _answer("Ask someone.")}, ASK),  # implicit
    ({"prompt": "When does it open?", "chosen": ASK[1:] + _answer("At 07:30."),  # the prompt repeated in each
      "rejected": ASK[1:] + _answer("Ask someone.")}, ASK[1:]),
    ({"prompt": "When does it open?", "system": "Answer from the context.", "chosen": "At 07:30.",
      "rejected": "Ask someone."}, ASK),  # flat, with a system prompt
], ids=["explicit", "text-prompt", "implicit", "repeated-prompt", "flat"])
def test_conversational_preference_rows(tmp_path, monkeypatch, row, prompt):
    vectorized = all(isinstance(v, str) for v in row.values())
    (got,) = _both_paths(tmp_path, [row], "preference", monkeypatch, vectorized=vectorized)
    assert (got["prompt"], got["chosen"], got["rejected"], got["schema_errors"]) == (
        prompt, "At 07:30.", "Ask someone.", None)


def test_a_multi_turn_prompt_keeps_every_turn(tmp_path, monkeypatch):
    earlier = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}]
    row = {"chosen": earlier + ASK[1:] + _answer("At 07:30."), "rejected": earlier + ASK[1:] + _answer("No idea.")}
    (got,) = _both_paths(tmp_path, [row], "preference", monkeypatch, vectorized=False)
    assert got["prompt"] == earlier + ASK[1:]


@pytest.mark.parametrize(("row", "error"), [
    ({"chosen": [{"role": "user", "content": "a"}] + _answer("x"),
      "rejected": [{"role": "user", "content": "b"}] + _answer("y")},
     "chosen, rejected: without a prompt, both conversations must share every turn before their answers"),
    ({"prompt": "q", "chosen": _answer("x") + [{"role": "user", "content": "and?"}], "rejected": "y"},
     "chosen: its last turn (the answer) is a 'user' turn, not the assistant's"),
    ({"prompt": "q", "chosen": ASK + _answer("x"), "rejected": "y"},
     "chosen: turns before the answer that the prompt does not have"),
    ({"prompt": 7, "chosen": "x", "rejected": "y"}, "prompt: expected text or a list of {role, content} messages"),
])
def test_a_preference_row_that_does_not_add_up_is_a_schema_error(row, error):
    (got,) = rows_to_table([(row, 1)], "preference", "f", "s").to_pylist()
    assert got["schema_errors"].startswith(error)


def _prepare(tmp_path: Path, rows: list, kind: str, name: str = "rows.jsonl", **kwargs):  # type: ignore[no-untyped-def]
    path = _jsonl(tmp_path / name, rows)
    return prepare_batch([SourceFile(str(path), "jsonl")], kind, CleaningConfig(), tmp_path / f"work-{path.stem}",
                         default_source="my-own-feed", chunk_rows=1000, **kwargs)


def _preference_rows(count: int) -> list[dict]:
    return [{"prompt": [{"role": "system", "content": "Answer from the context."},
                        {"role": "user", "content": f"Gate {i} opens at 0{i % 10}:30. When does gate {i} open?"}],
             "chosen": _answer(f"Gate {i} opens at 0{i % 10}:30."),
             "rejected": _answer(f"I could not say when gate {i} opens.")} for i in range(count)]


def test_preference_facts_read_the_prompts_last_user_turn(tmp_path):
    rows = _preference_rows(12)
    rows[3]["prompt"] = rows[3]["prompt"][:1] + [{"role": "user", "content": "   "}]  # asks nothing
    batch = _prepare(tmp_path, rows, "preference")
    frame = read_frame(batch.frame_path)
    assert frame.loc[0, "prompt_chars"] == len("Gate 0 opens at 00:30. When does gate 0 open?")
    assert frame.loc[3, "prompt_chars"] == 0
    evaluation = _prepare(tmp_path, [{"question": "  WHEN does gate 5 open? ", "contexts": ["c"],
                                      "reference": "r"}], "eval", name="eval.jsonl")
    # overlap: the question as the last user turn, whatever the system turn before it
    unrelated = read_frame(evaluation.frame_path)["overlap_key"][0]
    assert unrelated not in set(frame["overlap_key"])
    same = _prepare(tmp_path, [{"question": rows[5]["prompt"][1]["content"], "contexts": ["c"], "reference": "r"}],
                    "eval", name="same.jsonl")
    assert read_frame(same.frame_path)["overlap_key"][0] == frame.loc[5, "overlap_key"]

    run = validate_batch(load_contract(REPO_ROOT / "data_contracts" / "preference.yaml"), frame,
                         batch.report.duplicate_rate)
    assert run.summary.decision == "publish_with_quarantine"
    assert run.reasons[3] == "prompt is not empty"


def test_a_text_prompt_keeps_the_id_it_had_when_prompts_were_text(tmp_path):
    row = {"prompt": "When does gate 1 open?", "chosen": "At 07:30.", "rejected": "Ask someone."}
    batch = _prepare(tmp_path, [row, {**row, "prompt": [{"role": "user", "content": row["prompt"]}]}], "preference")
    assert batch.report.dropped == {"exact_duplicate": 1}  # the same row, given either way
    separator = "\x1e"
    before = stable_ids(pa.array([separator.join(["preference", row["prompt"], row["chosen"], row["rejected"]])]))
    assert pq.read_table(batch.clean_path)["id"].to_pylist() == before.to_pylist()


def test_pii_in_a_prompt_turn_is_redacted(tmp_path):
    rows = _preference_rows(3)
    rows[1]["prompt"][0]["content"] = "Staff: ops@example.net"
    batch = _prepare(tmp_path, rows, "preference")
    assert batch.report.pii_redacted == {"email": 1} and batch.report.rows_with_pii == 1
    prompts = pq.read_table(batch.clean_path)["prompt"].to_pylist()
    assert prompts[1][0]["content"] == "Staff: [EMAIL]"


def test_training_reads_preference_prompts_as_chats(tmp_path):
    from sluice.core.training.worker import _load_rows

    rows = _preference_rows(2)
    rows[1]["prompt"] = rows[1]["prompt"][1:]  # no system turn: training adds its own
    batch = _prepare(tmp_path, rows, "preference")
    loaded = _load_rows([batch.clean_path], "dpo", "Be brief.")
    assert loaded["prompt"] == [rows[0]["prompt"], [{"role": "system", "content": "Be brief."}] + rows[1]["prompt"]]
    assert loaded["chosen"] == [r["chosen"] for r in rows]

    legacy = tmp_path / "legacy.parquet"  # published under preference contract 1.x: the prompt as text
    pq.write_table(pa.table({"prompt": ["Q?"], "chosen": ["A."], "rejected": ["B."]}), legacy)
    assert _load_rows([str(legacy)], "dpo", None)["prompt"] == [[{"role": "user", "content": "Q?"}]]


# ---------------------------------------------------------------------------------------------
# a file of no shape: one error, before any contract
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sft", "preference"])
def test_a_file_of_no_shape_is_one_error_naming_file_fields_and_shapes(tmp_path, kind):
    path = _jsonl(tmp_path / "texts.jsonl", [{"text": f"document {i}", "label": i % 2, "source": "web"}
                                             for i in range(30)])
    with pytest.raises(InputError) as err:
        _tables(path, kind)
    assert len(err.value.problems) == 1
    message = str(err.value)
    assert f"{path}: no row matches a {kind} shape (fields found: text, label, source)" in message
    for shape in SHAPES[kind]:
        assert shape in message
    with pytest.raises(InputError, match="no row matches"):  # what ingest turns into "unreadable"
        _prepare(tmp_path, [{"text": "one"}], kind, name="one.jsonl")


def test_no_shape_is_found_in_parquet_and_csv_too(tmp_path):
    path = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"text": ["a", "b"]}), path)
    with pytest.raises(InputError, match=r"fields found: text\)"):
        _tables(path, "sft")
    csv_path = tmp_path / "texts.csv"
    csv_path.write_text("body,tag\nhello,x\n")
    with pytest.raises(InputError, match=r"fields found: body, tag\)"):
        _tables(csv_path, "sft")


def test_one_row_of_no_shape_is_that_rows_schema_error(tmp_path, monkeypatch):
    rows = [{"prompt": "a?", "response": "A."}, {"text": "stray", "source": "web"}, {"prompt": "b?", "response": "B."}]
    got = _both_paths(tmp_path, rows, "sft", monkeypatch, vectorized=False)
    assert got[1]["messages"] is None and got[1]["source"] == "web"
    assert got[1]["schema_errors"] == "matches no sft shape (fields: text, source)"
    assert [r["schema_errors"] for r in (got[0], got[2])] == [None, None]


def test_a_missing_answer_is_missing_not_shapeless(tmp_path):
    (got,) = _rows(_tables(_jsonl(tmp_path / "half.jsonl", [{"prompt": "only a prompt"}]), "sft"))
    assert got["messages"] is None and got["schema_errors"] is None  # the contract says "messages is present"


# ---------------------------------------------------------------------------------------------
# nothing dropped silently, and a new user's data passes the shipped contract
# ---------------------------------------------------------------------------------------------


def test_fields_no_shape_reads_are_counted_in_the_cleaning_report(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "a?", "name": "ada"}, {"role": "assistant", "content": "A."}],
             "prompt": "also a?", "id": "row-1", "source": "feed", "meta": {"lang": "en"}},
            {"instruction": "b?", "output": "B.", "category": "open_qa", "id": "row-2"},
            {"conversations": [{"from": "human", "value": "c?"}, {"from": "gpt", "value": "C.", "weight": 1}],
             "category": "chat"}]
    batch = _prepare(tmp_path, rows, "sft")
    assert batch.report.unmapped_fields == {"category": 2, "conversations[].weight": 1, "messages[].name": 1,
                                            "meta": 1, "prompt": 1}  # provenance (id, source) is read as such
    assert batch.report.rows_out == 3


def test_the_report_is_the_same_from_worker_processes(tmp_path, monkeypatch):
    import sluice.core.data.prepare

    rows = [{"instruction": f"Question {i} about lock {i}?", "input": f"context {i}", "output": f"Answer {i}.",
             "category": "qa"} for i in range(300)]
    path = _jsonl(tmp_path / "many.jsonl", rows)
    monkeypatch.setattr(readers, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(sluice.core.data.prepare, "PARALLEL_MIN_BYTES", 1)
    reports = [prepare_batch([SourceFile(str(path), "jsonl", path.stat().st_size)], "sft", CleaningConfig(),
                             tmp_path / f"w{workers}", default_source="x", chunk_rows=1000, workers=workers).report
               for workers in (1, 2)]
    assert reports[1].workers == 2
    assert reports[0].unmapped_fields == reports[1].unmapped_fields == {"category": 300}


def test_40_alpaca_rows_publish_with_every_input_in_the_messages(tmp_path):
    rows = [{"instruction": f"Summarise the notice for lock {i}.",
             "input": f"Notice {i}: lock {i} closes at {18 + i % 5}:00 on weekdays for repairs to gate {i}.",
             "output": f"Lock {i} closes at {18 + i % 5}:00 on weekdays."} for i in range(40)]
    batch = _prepare(tmp_path, rows, "sft")
    run = validate_batch(load_contract(REPO_ROOT / "data_contracts" / "sft.yaml"), read_frame(batch.frame_path),
                         batch.report.duplicate_rate)
    assert run.summary.decision == "publish", run.summary.reasons  # any source: a new user's own file passes
    published = " ".join(m["content"] for chat in pq.read_table(batch.clean_path)["messages"].to_pylist()
                         for m in chat)
    assert all(row["input"] in published for row in rows)
    assert batch.report.unmapped_fields == {}
