"""Preparing a batch: what cleaning drops and why, PII redaction, stable ids,
incomplete rows left for the contract, and that block sizes change nothing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.core.config import CleaningConfig
from sluice.core.data import readers
from sluice.core.data.cleaning.dedup import jaccard, near_duplicates, shingles
from sluice.core.data.cleaning.minhash import minhash_signatures
from sluice.core.data.prepare import PreparedBatch, _Accumulated, decide_drops, prepare_batch, read_frame
from sluice.core.data.readers import InputError, SourceFile, discover

WORDS = ("river barge lock keeper water meadow willow heron towpath bridge weir mill ferry reed channel bank "
         "gravel tide current mooring rope lantern boatyard harbour quay estuary marsh ditch culvert pump").split()


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _distinct_rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": f"Question {i}: {_sentence(rng, 8)}?", "response": f"Answer {i}: {_sentence(rng, 10)}."}
            for i in range(count)]


def _write_jsonl(path: Path, rows: list, blank_every: int = 0) -> Path:
    lines = []
    for index, row in enumerate(rows):
        lines.append(json.dumps(row))
        if blank_every and index % blank_every == blank_every - 1:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _prepare(tmp_path: Path, rows: list, *, kind: str = "sft", config: CleaningConfig | None = None,
             name: str = "rows.jsonl", work: str = "work", published_ids: set[str] | None = None,
             chunk_rows: int = 1000) -> PreparedBatch:
    path = _write_jsonl(tmp_path / name, rows)
    return prepare_batch([SourceFile(str(path), "jsonl")], kind, config or CleaningConfig(), tmp_path / work,
                         default_source="demo", chunk_rows=chunk_rows, published_ids=published_ids)


def _clean(batch: PreparedBatch) -> pa.Table:
    return pq.read_table(batch.clean_path)


def _frame(batch: PreparedBatch) -> pd.DataFrame:
    return read_frame(batch.frame_path)


def _user_texts(batch: PreparedBatch) -> list[str]:
    return [m[-2]["content"] for m in _clean(batch).column("messages").to_pylist()]


# ---------------------------------------------------------------------------------------------
# the cleaning report
# ---------------------------------------------------------------------------------------------


def test_the_report_counts_every_drop_by_reason(tmp_path):
    rng = random.Random(11)
    base = _distinct_rows(8)
    long_text = _sentence(rng, 70)
    words = long_text.split()
    words[35] = "zeppelin"  # one word changed in the middle
    near_text = " ".join(words)
    assert jaccard(long_text, near_text, 3) >= 0.8  # near duplicates by definition (exact Jaccard)
    published_row = {"prompt": "Is this row already on main?", "response": "Yes, it was published before."}
    rows = base + [
        {"prompt": "  " + base[0]["prompt"].replace(" ", "   ") + "\t", "response": base[0]["response"] + "  \n"},
        {"prompt": "Summarise the log.", "response": long_text},
        {"prompt": "Summarise the log.", "response": near_text},
        published_row,
        {"prompt": "Hi", "response": "Hello"},  # 2 tokens
        {"prompt": "Tell me everything.", "response": _sentence(rng, 130)},  # > 100 tokens
    ]
    first = _prepare(tmp_path, [published_row], work="first")
    published_id = _clean(first).column("id")[0].as_py()

    config = CleaningConfig(min_tokens=4, max_tokens=100, near_duplicate_threshold=0.8)
    batch = _prepare(tmp_path, rows, config=config, published_ids={published_id, "f" * 32})
    report = batch.report
    assert report.rows_in == len(rows)
    assert report.dropped == {"exact_duplicate": 1, "near_duplicate": 1, "already_published": 1, "too_short": 1,
                              "too_long": 1}
    assert report.rows_out == len(rows) - 5
    assert report.duplicate_rate == pytest.approx(3 / len(rows))

    clean = _clean(batch)
    assert clean.num_rows == report.rows_out
    responses = [m[-1]["content"] for m in clean.column("messages").to_pylist()]
    assert long_text in responses and near_text not in responses  # the first of the near pair stays
    assert responses.count(base[0]["response"]) == 1
    assert "Hello" not in responses
    assert published_id not in clean.column("id").to_pylist()
    assert _frame(batch)["id"].tolist() == clean.column("id").to_pylist()


def test_nothing_is_dropped_when_the_rules_are_off(tmp_path):
    rows = _distinct_rows(3) + _distinct_rows(3)  # every row twice
    config = CleaningConfig(drop_exact_duplicates=False, near_duplicate_threshold=None)
    batch = _prepare(tmp_path, rows, config=config)
    assert batch.report.rows_out == 6
    assert batch.report.dropped == {}
    assert batch.report.duplicate_rate == 0.0
    ids = _clean(batch).column("id").to_pylist()
    assert ids[:3] == ids[3:]  # same content, same id


def test_pii_is_redacted_and_counted(tmp_path):
    rows = _distinct_rows(4) + [
        {"prompt": "How do I reach the keeper?",
         "response": "Write to nell.cobb@example.com or call +44 20 7946 0958."},
        {"prompt": "And the harbour master?", "response": "Mail harbour@example.org about mooring."},
        {"system": "Staff address: ops@example.net", "prompt": "Who runs the weir?", "response": "The weir crew."},
    ]
    batch = _prepare(tmp_path, rows)
    assert batch.report.pii_redacted == {"email": 3, "phone": 1}
    assert batch.report.rows_with_pii == 3
    clean = _clean(batch)
    text = json.dumps(clean.column("messages").to_pylist())
    for secret in ("nell.cobb@example.com", "harbour@example.org", "ops@example.net", "7946"):
        assert secret not in text
    assert text.count("[EMAIL]") == 3
    assert text.count("[PHONE]") == 1
    ids = clean.column("id").to_pylist()
    assert len(ids) == clean.num_rows == len(rows)
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and len(i) == 32 for i in ids)
    assert (_frame(batch)["pii_remaining"] == 0).all()


def test_without_redaction_pii_stays_and_is_seen_by_the_frame(tmp_path):
    rows = _distinct_rows(3) + [{"prompt": "Contact?", "response": "Write to nell.cobb@example.com today."}]
    batch = _prepare(tmp_path, rows, config=CleaningConfig(redact_pii=False))
    assert batch.report.pii_redacted == {}
    assert batch.report.rows_with_pii == 0
    assert "nell.cobb@example.com" in json.dumps(_clean(batch).column("messages").to_pylist())
    assert _frame(batch)["pii_remaining"].tolist() == [0, 0, 0, 1]


# ---------------------------------------------------------------------------------------------
# near duplicates are confirmed on the exact Jaccard similarity
# ---------------------------------------------------------------------------------------------

_CONTEXT = ("The sluice at Ashstead opens at 07:30 and closes at 21:30. Its keeper is Nell Cobb. Boats up to 33 "
            "metres may pass, and the water stands at 275 centimetres.")


def _context_row(question: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "Answer from the context."},
                         {"role": "user", "content": f"Context: {_CONTEXT}\nQuestion: {question}"},
                         {"role": "assistant", "content": answer}], "source": "demo"}


def test_a_shared_context_with_different_questions_is_not_a_near_duplicate(tmp_path):
    rows = [_context_row("When does the sluice at Ashstead open?", "The sluice at Ashstead opens at 07:30."),
            _context_row("When does the sluice at Ashstead close?", "The sluice at Ashstead closes at 21:30.")]
    texts = ["\n".join(m["content"] for m in r["messages"]) for r in rows]
    similarity = jaccard(texts[0], texts[1], 3)
    assert 0.75 < similarity < 0.9  # alike, but below the threshold
    # MinHash alone would call this pair a near duplicate: the exact check is what keeps it
    signatures = minhash_signatures(pa.array(texts), num_perm=64, shingle_words=3)
    assert near_duplicates(signatures, 0.9, keep=np.ones(2, dtype=bool))[1] == 0

    batch = _prepare(tmp_path, rows, config=CleaningConfig(near_duplicate_threshold=0.9))
    assert batch.report.rows_out == 2
    assert "near_duplicate" not in batch.report.dropped
    assert len(set(_frame(batch)["overlap_key"])) == 2


def test_a_real_near_duplicate_of_the_same_shape_is_dropped(tmp_path):
    rows = [_context_row("When does the sluice at Ashstead open?", "The sluice at Ashstead opens at 07:30."),
            _context_row("When does the sluice at Ashstead open?", "The sluice at Ashstead opens at 7:30.")]
    batch = _prepare(tmp_path, rows, config=CleaningConfig(near_duplicate_threshold=0.9))
    assert batch.report.dropped == {"near_duplicate": 1}
    assert [m[-1]["content"] for m in _clean(batch).column("messages").to_pylist()] == [
        "The sluice at Ashstead opens at 07:30."]


# ---------------------------------------------------------------------------------------------
# incomplete rows go to the contract
# ---------------------------------------------------------------------------------------------


def test_incomplete_rows_are_neither_too_short_nor_duplicates(tmp_path):
    rng = random.Random(5)
    shared_prompt = "Please explain " + _sentence(rng, 20)
    rows = _distinct_rows(3) + [
        {"prompt": shared_prompt},  # no response
        {"prompt": shared_prompt},  # the same again
        {"prompt": 42, "response": "a number is not a prompt"},
        {"prompt": 42, "response": "a number is not a prompt"},
        {"messages": "not a list"},
    ]
    config = CleaningConfig(min_tokens=3, near_duplicate_threshold=0.5)
    batch = _prepare(tmp_path, rows, config=config)
    assert batch.report.rows_in == batch.report.rows_out == len(rows)
    assert batch.report.dropped == {}
    frame = _frame(batch)
    assert frame["has_messages"].tolist() == [True] * 3 + [False] * 5
    assert frame["types_ok"].tolist() == [True] * 5 + [False] * 3
    assert frame["source_line"].tolist() == list(range(1, len(rows) + 1))
    assert frame["id"].nunique() == len(rows)
    assert frame.loc[5, "schema_errors"].startswith("prompt:")
    assert frame.loc[7, "schema_errors"].startswith("messages:")


# ---------------------------------------------------------------------------------------------
# ids
# ---------------------------------------------------------------------------------------------


def test_ids_are_stable_across_runs_and_file_names(tmp_path):
    rows = _distinct_rows(6) + [{"prompt": "missing its answer"}]
    one = _clean(_prepare(tmp_path, rows, work="one")).column("id").to_pylist()
    two = _clean(_prepare(tmp_path, rows, work="two")).column("id").to_pylist()
    assert one == two
    renamed = _clean(_prepare(tmp_path, rows, name="renamed.jsonl", work="three")).column("id").to_pylist()
    assert renamed[:6] == one[:6]  # complete rows: content only


def test_ids_depend_on_content(tmp_path):
    rows = [{"prompt": "Same prompt", "response": "Answer A"}, {"prompt": "Same prompt", "response": "Answer B"},
            {"system": "Be brief.", "prompt": "Same prompt", "response": "Answer A"}]
    ids = _clean(_prepare(tmp_path, rows)).column("id").to_pylist()
    assert len(set(ids)) == 3


def test_the_same_chat_given_in_either_shape_is_an_exact_duplicate(tmp_path):
    rows = [{"prompt": "Where is the weir?", "response": "Past the mill."},
            {"messages": [{"role": "user", "content": "Where is the weir?"},
                          {"role": "assistant", "content": "Past the mill."}]}]
    batch = _prepare(tmp_path, rows)
    assert batch.report.dropped == {"exact_duplicate": 1}


# ---------------------------------------------------------------------------------------------
# block sizes change nothing
# ---------------------------------------------------------------------------------------------


def _mixed_rows() -> list:
    rng = random.Random(21)
    rows = _distinct_rows(60, seed=3)
    long_text = _sentence(rng, 60)
    for i in range(0, 60, 9):  # exact and near duplicates spread over the file
        rows.insert(i + 5, dict(rows[i]))
    rows.insert(20, {"prompt": "Summarise.", "response": long_text})
    rows.insert(50, {"prompt": "Summarise.", "response": long_text.replace(long_text.split()[30], "zeppelin", 1)})
    rows.insert(33, {"prompt": "only a prompt"})
    rows.insert(40, {"prompt": 7, "response": "typed wrong"})
    rows.insert(45, {"prompt": "Contact?", "response": "Mail ops@example.com."})
    return rows


def test_block_size_does_not_change_the_result(tmp_path, monkeypatch):
    rows = _mixed_rows()
    path = _write_jsonl(tmp_path / "rows.jsonl", rows, blank_every=13)
    config = CleaningConfig(near_duplicate_threshold=0.8)

    def run(work: str) -> PreparedBatch:
        return prepare_batch([SourceFile(str(path), "jsonl")], "sft", config, tmp_path / work,
                             default_source="demo", chunk_rows=1000)

    whole = run("whole")
    monkeypatch.setattr(readers, "BLOCK_BYTES", 300)
    assert len(list(readers._read_blocks(path.open("rb")))) > 10
    blocks = run("blocks")

    assert whole.report.dropped.get("exact_duplicate", 0) >= 7
    assert whole.report.dropped.get("near_duplicate", 0) >= 1
    for column in _clean(whole).column_names:
        assert _clean(blocks)[column].to_pylist() == _clean(whole)[column].to_pylist(), column
    pd.testing.assert_frame_equal(_frame(blocks), _frame(whole))
    assert blocks.report.model_dump(exclude={"seconds"}) == whole.report.model_dump(exclude={"seconds"})


def test_jsonl_and_a_json_array_of_the_same_rows_give_the_same_batch(tmp_path):
    """JSONL blocks may take the vectorized path, a JSON array is always read row by row:
    the batch must not depend on it, incomplete rows included."""
    rows = _distinct_rows(5) + [{"prompt": "Mail ops@example.com about the weir, please."},
                                {"prompt": "What is the keeper's number?", "response": None}]
    as_jsonl = _write_jsonl(tmp_path / "rows.jsonl", rows)
    as_array = tmp_path / "rows.json"
    as_array.write_text(json.dumps(rows))
    batches = [prepare_batch([SourceFile(str(path), fmt)], "sft", CleaningConfig(), tmp_path / fmt,
                             default_source="demo", chunk_rows=1000)
               for path, fmt in ((as_jsonl, "jsonl"), (as_array, "json"))]
    reports = [b.report.model_dump(exclude={"seconds"}) for b in batches]
    assert reports[0] == reports[1]
    tables = [_clean(b).drop_columns(["source_file"]) for b in batches]
    for column in ("messages", "source", "source_line", "schema_errors", "overlap_key"):
        assert tables[0][column].to_pylist() == tables[1][column].to_pylist(), column
    assert tables[0]["id"].to_pylist()[:5] == tables[1]["id"].to_pylist()[:5]


def test_chunk_rows_does_not_change_the_result_for_csv(tmp_path):
    rows = _distinct_rows(25, seed=9)
    rows += [dict(rows[3]), dict(rows[17])]
    path = tmp_path / "rows.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    results = [prepare_batch([SourceFile(str(path), "csv")], "sft", CleaningConfig(), tmp_path / f"w{size}",
                             default_source="demo", chunk_rows=size) for size in (1000, 4, 1)]
    for other in results[1:]:
        assert _clean(other).equals(_clean(results[0]))
        assert other.report.model_dump(exclude={"seconds"}) == results[0].report.model_dump(exclude={"seconds"})
    assert results[0].report.dropped == {"exact_duplicate": 2}


def test_several_files_make_one_batch(tmp_path):
    rows = _distinct_rows(6)
    first = _write_jsonl(tmp_path / "a.jsonl", rows[:4])
    second = _write_jsonl(tmp_path / "b.jsonl", rows[2:])  # two rows repeat across files
    batch = prepare_batch([SourceFile(str(first), "jsonl"), SourceFile(str(second), "jsonl")], "sft",
                          CleaningConfig(), tmp_path / "work", default_source="demo", chunk_rows=1000)
    assert batch.report.rows_in == 8
    assert batch.report.dropped == {"exact_duplicate": 2}
    frame = _frame(batch)
    assert list(zip(frame["source_file"], frame["source_line"], strict=True)) == [
        (str(first), 1), (str(first), 2), (str(first), 3), (str(first), 4), (str(second), 3), (str(second), 4)]
    assert batch.files == [str(first), str(second)]


# ---------------------------------------------------------------------------------------------
# empty input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_file_is_an_input_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        prepare_batch([SourceFile(str(path), "jsonl")], "sft", CleaningConfig(), tmp_path / "work",
                      default_source="demo", chunk_rows=1000)
    assert "empty input" in str(err.value)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------------------------
# decide_drops and jaccard on their own
# ---------------------------------------------------------------------------------------------


def test_jaccard_on_word_shingles():
    assert jaccard("the river runs past the mill", "The river, runs past the MILL!", 3) == 1.0
    assert jaccard("one two three", "four five six", 3) == 0.0
    assert jaccard("", "", 3) == 0.0
    assert jaccard("", "some words here", 3) == 0.0
    assert jaccard("a b", "a b", 3) == 1.0  # shorter than a shingle: the whole text is one
    # one word changed in five: 3-word shingles {abc, bcd, cde} vs {abc, bcx, cxe}
    assert jaccard("a b c d e", "a b c x e", 3) == pytest.approx(1 / 5)
    assert shingles("A b C d", 2) == {("a", "b"), ("b", "c"), ("c", "d")}


def _acc(texts: list[str], ids: list[str], tokens: list[int], complete: list[bool]) -> _Accumulated:
    acc = _Accumulated()
    acc.ids.append(pa.array(ids, pa.string()))
    acc.tokens.append(np.array(tokens, dtype=np.int32))
    acc.complete.append(np.array(complete, dtype=bool))
    acc.signatures.append(minhash_signatures(pa.array(texts), num_perm=64, shingle_words=3))
    return acc


def test_decide_drops_keeps_the_first_of_each_duplicate_and_spares_incomplete_rows():
    texts = ["alpha beta gamma delta", "epsilon zeta eta theta", "alpha beta gamma delta", "", "iota"]
    acc = _acc(texts, ["a", "b", "a", "c", "d"], [4, 4, 4, 0, 1], [True, True, True, False, True])
    keep, dropped = decide_drops(acc, CleaningConfig(min_tokens=2), {"b"})
    assert keep.tolist() == [True, False, False, True, False]
    assert dropped == {"already_published": 1, "exact_duplicate": 1, "too_short": 1, "too_long": 0,
                       "near_duplicate": 0}


def test_decide_drops_confirms_near_duplicates_on_the_texts():
    text = " ".join(f"word{i}" for i in range(40))
    acc = _acc([text, text], ["x", "y"], [40, 40], [True, True])  # identical signatures, different ids
    config = CleaningConfig(near_duplicate_threshold=0.9)
    keep, dropped = decide_drops(acc, config, set())
    assert keep.tolist() == [True, False] and dropped["near_duplicate"] == 1

    asked = []

    def texts_at(positions):
        asked.append(positions.tolist())
        return ["completely different words here" if p == 1 else text for p in positions]

    keep, dropped = decide_drops(acc, config, set(), texts_at=texts_at)
    assert asked == [[1, 0]]  # the candidate, then its representative
    assert keep.tolist() == [True, True] and dropped["near_duplicate"] == 0

    keep, _ = decide_drops(acc, config, set(), texts_at=lambda positions: [text for _ in positions])
    assert keep.tolist() == [True, False]


def test_only_the_outputs_are_left_in_the_work_dir(tmp_path):
    batch = _prepare(tmp_path, _distinct_rows(3))
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["clean.parquet", "frame.arrow"]
    assert Path(batch.clean_path).parent == Path(batch.frame_path).parent == tmp_path / "work"
    assert len(_frame(batch)) == _clean(batch).num_rows == 3


# ------------------------------------------------------------------ worker processes


def _worker_rows(count: int) -> list[dict]:
    rows = [{"prompt": f"Question number {i} about lock {i % 97} and weir {i % 13}?",
             "response": f"Answer {i}: the lock {i % 97} opens at {i % 24:02d}:00.", "source": "demo"}
            for i in range(count)]
    rows[7]["response"] = "Write to keeper@canal.example about it."
    rows[50] = dict(rows[10])  # an exact duplicate, in another block
    return rows


def test_worker_processes_give_the_same_batch_as_one_process(tmp_path, monkeypatch):
    import sluice.core.data.prepare
    import sluice.core.data.readers

    source = tmp_path / "many.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in _worker_rows(400)))
    monkeypatch.setattr(sluice.core.data.readers, "BLOCK_BYTES", 4096)  # many blocks, spread over both workers
    monkeypatch.setattr(sluice.core.data.prepare, "PARALLEL_MIN_BYTES", 1)
    config = CleaningConfig()

    here = prepare_batch(discover(str(source)), "sft", config, tmp_path / "here", default_source="x",
                         chunk_rows=1000, workers=1)
    there = prepare_batch(discover(str(source)), "sft", config, tmp_path / "there", default_source="x",
                          chunk_rows=1000, workers=2)
    assert (here.report.workers, there.report.workers) == (1, 2)
    assert pq.read_table(here.clean_path).equals(pq.read_table(there.clean_path))
    assert read_frame(here.frame_path).equals(read_frame(there.frame_path))
    for field in ("rows_in", "rows_out", "dropped", "pii_redacted", "rows_with_pii", "duplicate_rate"):
        assert getattr(here.report, field) == getattr(there.report, field), field
    assert there.report.dropped == {"exact_duplicate": 1} and there.report.pii_redacted == {"email": 1}
    assert not (tmp_path / "there" / "scratch").exists()  # worker files cleaned up


def test_an_unreadable_line_in_a_worker_names_file_and_line(tmp_path, monkeypatch):
    import sluice.core.data.prepare
    import sluice.core.data.readers

    lines = [json.dumps(r) for r in _worker_rows(300)]
    lines[211] = '{"prompt": "broken", "response": '
    source = tmp_path / "broken.jsonl"
    source.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(sluice.core.data.readers, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(sluice.core.data.prepare, "PARALLEL_MIN_BYTES", 1)
    with pytest.raises(InputError) as err:
        prepare_batch(discover(str(source)), "sft", CleaningConfig(), tmp_path / "w", default_source="x",
                      chunk_rows=1000, workers=2)
    assert f"{source}:212: malformed JSON" in str(err.value)
