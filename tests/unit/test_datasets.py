"""Finding input files and reading them into canonical rows: every format,
the field-name aliases, provenance (file and line), wrongly typed fields and
unreadable input — and that the fast vectorized JSONL path says exactly what
the row-by-row path says."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.core.data import readers
from sluice.core.data.kinds import CANONICAL, rows_to_table
from sluice.core.data.readers import MAX_REPORTED_PROBLEMS, InputError, SourceFile, discover, read_source_file

CHAT = [{"role": "user", "content": "Where is the lock?"}, {"role": "assistant", "content": "Down the river."}]


def _jsonl(path: Path, rows: list, *, blank_after: tuple[int, ...] = ()) -> Path:
    lines = []
    for index, row in enumerate(rows):
        lines.append(json.dumps(row))
        if index in blank_after:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(path: Path, kind: str, fmt: str | None = None, *, default_source: str = "ingest",
          chunk_rows: int = 1000) -> list[dict]:
    source = SourceFile(str(path), fmt or readers.FORMATS[path.suffix.lower()])
    tables = list(read_source_file(source, kind, default_source, chunk_rows))
    for table in tables:
        assert table.schema == CANONICAL[kind]
    return [row for table in tables for row in table.to_pylist()]


def _chat(prompt: str, response: str, system: str | None = None) -> list[dict]:
    turns = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


# =============================================================================================
# discover
# =============================================================================================


@pytest.mark.parametrize(("name", "fmt"), [
    ("rows.jsonl", "jsonl"), ("rows.ndjson", "jsonl"), ("rows.json", "json"), ("rows.csv", "csv"),
    ("rows.parquet", "parquet"), ("rows.pq", "parquet"), ("ROWS.JSONL", "jsonl"), ("Rows.CSV", "csv"),
])
def test_a_single_file_is_found_with_its_format_and_size(tmp_path, name, fmt):
    path = tmp_path / name
    path.write_bytes(b"x" * 17)
    found = discover(str(path))
    assert found == [SourceFile(str(path), fmt, 17)]
    assert discover(f"file://{path}")[0].format == fmt


def test_a_folder_is_searched_recursively_in_sorted_order(tmp_path):
    for relative in ("b.jsonl", "a/z.csv", "a/b/deep.parquet", "c.json", "a/m.ndjson",
                     "notes.txt", "README.md", "a/b/image.png",  # not data: ignored
                     ".hidden.jsonl", ".cache/x.jsonl", "a/.git/y.csv"):  # hidden: skipped
        path = tmp_path / "data" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n")
    found = discover(str(tmp_path / "data"))
    relative = [str(Path(f.location).relative_to(tmp_path / "data")) for f in found]
    assert relative == ["a/b/deep.parquet", "a/m.ndjson", "a/z.csv", "b.jsonl", "c.json"]
    assert [f.format for f in found] == ["parquet", "jsonl", "csv", "jsonl", "json"]
    assert all(f.size_bytes == 3 for f in found)


def test_a_saved_hugging_face_dataset_is_one_source(tmp_path):
    from datasets import Dataset, DatasetDict

    single = tmp_path / "single"
    Dataset.from_dict({"prompt": ["a", "b"], "response": ["c", "d"]}).save_to_disk(str(single))
    splits = tmp_path / "splits"
    DatasetDict({"train": Dataset.from_dict({"prompt": ["a"], "response": ["b"]}),
                 "test": Dataset.from_dict({"prompt": ["c"], "response": ["d"]})}).save_to_disk(str(splits))
    for folder in (single, splits):
        found = discover(str(folder))
        assert len(found) == 1
        assert found[0].format == "hf"
        assert found[0].location == str(folder)


@pytest.fixture
def memory_root():
    """A unique folder on fsspec's in-memory file system, removed afterwards."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/sluice-test-{uuid.uuid4().hex[:10]}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_an_fsspec_url_names_a_folder_or_a_file(memory_root):
    fs, root = memory_root
    fs.pipe(f"{root}/sub/b.jsonl", json.dumps({"prompt": "p1", "response": "r1"}).encode() + b"\n")
    fs.pipe(f"{root}/a.csv", b"prompt,response\np2,r2\n")
    fs.pipe(f"{root}/notes.txt", b"not data")

    found = discover(f"memory://{root}")
    assert [f.format for f in found] == ["csv", "jsonl"]
    assert [f.name for f in found] == ["a.csv", "b.jsonl"]
    assert [f.size_bytes for f in found] == [len(b"prompt,response\np2,r2\n"),
                                            len(json.dumps({"prompt": "p1", "response": "r1"})) + 1]
    rows = [row for source in found for row in
            (r for t in read_source_file(source, "sft", "mem", 10) for r in t.to_pylist())]
    assert [r["messages"] for r in rows] == [_chat("p2", "r2"), _chat("p1", "r1")]
    assert [r["source_line"] for r in rows] == [2, 1]
    assert all(r["source_file"].startswith("memory://") for r in rows)

    single = discover(f"memory://{root}/a.csv")
    assert len(single) == 1 and single[0].format == "csv" and single[0].name == "a.csv"

    with pytest.raises(InputError, match="does not exist"):
        discover(f"memory://{root}/missing.jsonl")
    with pytest.raises(InputError, match="unsupported file type"):
        discover(f"memory://{root}/notes.txt")
    fs.rm(f"{root}/a.csv")
    fs.rm(f"{root}/sub", recursive=True)
    with pytest.raises(InputError, match="no .jsonl"):
        discover(f"memory://{root}")


def test_a_remote_folder_skips_hidden_files_like_a_local_one(memory_root, tmp_path):
    """The same folder gives the same files whether it is on disk or behind a URL."""
    fs, root = memory_root
    layout = {"rows.jsonl": b"{}\n", ".hidden.jsonl": b"{}\n", ".cache/part.jsonl": b"{}\n"}
    for relative, data in layout.items():
        fs.pipe(f"{root}/{relative}", data)
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(data)
    local = [f.name for f in discover(str(tmp_path))]
    remote = [f.name for f in discover(f"memory://{root}")]
    assert local == ["rows.jsonl"]
    assert remote == local


def test_a_missing_path_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "rows.jsonl"
    with pytest.raises(InputError) as err:
        discover(str(missing))
    assert str(missing) in str(err.value)
    assert "does not exist" in str(err.value)
    assert err.value.problems[0].file == str(missing)


def test_an_unsupported_file_type_is_an_error(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("hello")
    with pytest.raises(InputError) as err:
        discover(str(path))
    assert "'.txt'" in str(err.value)
    assert str(path) in str(err.value)


def test_a_folder_with_nothing_readable_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".hidden.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match="holds no"):
        discover(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no"):
        discover(str(empty))


# =============================================================================================
# JSONL
# =============================================================================================


def test_both_sft_shapes_in_one_file(tmp_path):
    rows = [
        {"messages": CHAT},
        {"prompt": "What time is it?", "response": "Noon."},
        {"system": "Be brief.", "prompt": "Name a river.", "response": "Thames."},
        {"messages": CHAT[:1] + [{"role": "assistant", "content": "Up the hill."}], "prompt": "ignored",
         "response": "ignored"},
        {"system": "", "prompt": "Empty system?", "response": "Dropped."},
    ]
    path = _jsonl(tmp_path / "chat.jsonl", rows)
    got = _read(path, "sft")
    assert [r["messages"] for r in got] == [
        CHAT,
        _chat("What time is it?", "Noon."),
        _chat("Name a river.", "Thames.", "Be brief."),
        _chat("Where is the lock?", "Up the hill."),  # messages win over prompt/response
        _chat("Empty system?", "Dropped."),
    ]
    assert [r["source_line"] for r in got] == list(range(1, len(rows) + 1))
    assert all(r["source_file"] == str(path) and r["schema_errors"] is None for r in got)


@pytest.mark.parametrize(("row", "messages"), [
    ({"instruction": "Translate 'sluice'.", "output": "Schleuse."}, _chat("Translate 'sluice'.", "Schleuse.")),
    ({"system_prompt": "Be kind.", "question": "How are you?", "answer": "Well."},
     _chat("How are you?", "Well.", "Be kind.")),
    ({"input": "2+2?", "completion": "4"}, _chat("2+2?", "4")),
    ({"prompt": "both given", "instruction": "second choice", "response": "r"}, _chat("both given", "r")),
])
def test_sft_aliases(tmp_path, row, messages):
    got = _read(_jsonl(tmp_path / "alias.jsonl", [row, row]), "sft")
    assert [r["messages"] for r in got] == [messages, messages]


@pytest.mark.parametrize(("row", "expected"), [
    ({"question": "Q1", "contexts": ["c1", "c2"], "reference": "R1"}, ("Q1", ["c1", "c2"], "R1")),
    ({"user_input": "Q2", "retrieved_contexts": ["c3"], "ground_truth": "R2"}, ("Q2", ["c3"], "R2")),
    ({"query": "Q3", "context": "just one passage", "reference_answer": "R3"}, ("Q3", ["just one passage"], "R3")),
    ({"question": "Q4", "contexts": "also one passage", "answer": "R4"}, ("Q4", ["also one passage"], "R4")),
])
def test_eval_aliases_and_a_single_context_passage(tmp_path, row, expected):
    got = _read(_jsonl(tmp_path / "eval.jsonl", [row]), "eval")
    assert [(r["question"], r["contexts"], r["reference"]) for r in got] == [expected]
    assert got[0]["schema_errors"] is None
    # the same row read exactly (row by row) says the same
    assert rows_to_table([(row, 1)], "eval", "f", "s").to_pylist()[0]["contexts"] == expected[1]


@pytest.mark.parametrize("prompt_name", ["prompt", "question", "instruction"])
def test_preference_rows_and_aliases(tmp_path, prompt_name):
    rows = [{prompt_name: "P1", "chosen": "good", "rejected": "bad"},
            {prompt_name: "P2", "chosen": "yes", "rejected": None}]
    got = _read(_jsonl(tmp_path / "pref.jsonl", rows), "preference")
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in got] == [  # a text prompt is one user turn
        ([{"role": "user", "content": "P1"}], "good", "bad"), ([{"role": "user", "content": "P2"}], "yes", None)]


def test_a_rows_own_source_wins_over_the_default(tmp_path):
    rows = [{"prompt": "a", "response": "b", "source": "feedback"}, {"prompt": "c", "response": "d"},
            {"prompt": "e", "response": "f", "source": None}]
    got = _read(_jsonl(tmp_path / "s.jsonl", rows), "sft", default_source="support-tickets")
    assert [r["source"] for r in got] == ["feedback", "support-tickets", "support-tickets"]


def test_line_numbers_count_blank_lines(tmp_path):
    rows = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(5)]
    path = _jsonl(tmp_path / "gaps.jsonl", rows, blank_after=(0, 2))
    # file: row0, blank, row1, row2, blank, row3, row4
    got = _read(path, "sft")
    assert [r["source_line"] for r in got] == [1, 3, 4, 6, 7]
    assert [r["messages"][0]["content"] for r in got] == ["p0", "p1", "p2", "p3", "p4"]


def _reference_parse(path: Path) -> list[tuple[dict, int]]:
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line.strip():
            out.append((json.loads(line), number))
    return out


def test_many_small_blocks_keep_every_row_and_line(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK_BYTES", 200)
    rng = random.Random(7)
    lines = []
    for i in range(150):
        if rng.random() < 0.1:
            lines.append("")  # blank lines, some of them at block edges
        if rng.random() < 0.3:
            row = {"messages": _chat(f"question {i} " + "x" * rng.randint(0, 120), f"answer {i} é ✓"),
                   "source": "feedback"}
        else:
            row = {"prompt": f"question {i}", "response": f"answer {i} " + "y" * rng.randint(0, 300)}
        lines.append(json.dumps(row, ensure_ascii=rng.random() < 0.5))
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.stat().st_size > 20 * 200

    tables = list(read_source_file(SourceFile(str(path), "jsonl"), "sft", "ingest", 1000))
    assert len(tables) > 10  # really read in many blocks
    got = [r for t in tables for r in t.to_pylist()]
    expected = rows_to_table(_reference_parse(path), "sft", str(path), "ingest").to_pylist()
    assert len(got) == 150
    assert got == expected
    assert [r["messages"][0]["content"].split()[1] for r in got] == [str(i) for i in range(150)]


def test_a_line_longer_than_a_block(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK_BYTES", 64)
    rows = [{"prompt": "short", "response": "a"}, {"prompt": "long", "response": "z" * 5000},
            {"prompt": "after", "response": "b"}]
    got = _read(_jsonl(tmp_path / "long.jsonl", rows), "sft")
    assert [r["messages"][1]["content"] for r in got] == ["a", "z" * 5000, "b"]
    assert [r["source_line"] for r in got] == [1, 2, 3]


def test_a_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "a", "response": "b"}).encode() + b"\n")
    assert [r["messages"] for r in _read(path, "sft")] == [_chat("a", "b")]


def test_a_ten_megabyte_row_is_read_intact(tmp_path):
    rng = random.Random(3)
    words = ["sluice", "gate", "river", "barge", "lock", "keeper", "water", "é", "日本"]
    long = " ".join(rng.choice(words) for _ in range(2_000_000))
    assert len(long.encode()) > 10_000_000
    rows = [{"prompt": "first", "response": "one"}, {"prompt": "tell me everything", "response": long},
            {"prompt": "last", "response": "three"}]
    got = _read(_jsonl(tmp_path / "big.jsonl", rows), "sft")
    assert len(got) == 3
    assert got[1]["messages"][1]["content"] == long
    assert [r["source_line"] for r in got] == [1, 2, 3]
    assert got[2]["messages"] == _chat("last", "three")


# ------------------------------------------------------------------ fast path = exact path


@pytest.mark.parametrize(("kind", "rows"), [
    ("sft", [{"messages": CHAT, "source": "demo"}, {"prompt": "a", "response": "b"},
             {"system": "s", "prompt": "c", "response": "d"}, {"prompt": "no answer"},
             {"messages": None, "prompt": "e", "response": "f"}]),
    ("eval", [{"question": "q", "contexts": ["c1", "c2"], "reference": "r"},
              {"question": "q2", "contexts": [], "reference": "r2", "source": "demo"},
              {"question": "q3"}]),
    ("eval", [{"question": "q", "contexts": "one passage", "reference": "r"},
              {"question": "q2", "contexts": None, "reference": "r2"}]),
    ("preference", [{"prompt": "p", "chosen": "c", "rejected": "r"}, {"prompt": "p2", "chosen": "c2"}]),
], ids=["sft", "eval-lists", "eval-single-passage", "preference"])
def test_fast_path_matches_exact_path(tmp_path, kind, rows):
    path = _jsonl(tmp_path / "rows.jsonl", rows)
    got = _read(path, kind, default_source="dflt")
    exact = rows_to_table([(r, i + 1) for i, r in enumerate(rows)], kind, str(path), "dflt").to_pylist()
    assert got == exact


@pytest.mark.parametrize(("kind", "rows"), [
    # different aliases on different rows of one file
    ("sft", [{"prompt": "a", "response": "b"}, {"instruction": "c", "output": "d"}]),
    ("eval", [{"question": "q1", "contexts": ["c1"], "reference": "r1"},
              {"user_input": "q2", "retrieved_contexts": ["c2"], "ground_truth": "r2"}]),
    # an empty source field
    ("sft", [{"prompt": "a", "response": "b", "source": ""}, {"prompt": "c", "response": "d", "source": "demo"}]),
    # a chat turn without text
    ("sft", [{"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "x"}]},
             {"messages": CHAT}]),
    # a null passage among the contexts
    ("eval", [{"question": "q", "contexts": ["c", None], "reference": "r"},
              {"question": "q2", "contexts": ["c2"], "reference": "r2"}]),
], ids=["sft-mixed-aliases", "eval-mixed-aliases", "empty-source", "null-turn-content", "null-passage"])
def test_fast_path_matches_exact_path_on_unusual_rows(tmp_path, kind, rows):
    """Whatever a block holds, the vectorized path must say what the row-by-row path says."""
    path = _jsonl(tmp_path / "rows.jsonl", rows)
    got = _read(path, kind, default_source="dflt")
    exact = rows_to_table([(r, i + 1) for i, r in enumerate(rows)], kind, str(path), "dflt").to_pylist()
    assert got == exact


def test_the_fast_path_is_really_taken(tmp_path, monkeypatch):
    """Guard for the comparison above: a plain block must not go row by row."""
    calls = []
    original = readers._jsonl_exact
    monkeypatch.setattr(readers, "_jsonl_exact", lambda *a: calls.append(1) or original(*a))
    _read(_jsonl(tmp_path / "plain.jsonl", [{"prompt": "a", "response": "b"}, {"messages": CHAT}]), "sft")
    assert calls == []
    _read(_jsonl(tmp_path / "odd.jsonl", [{"prompt": 1, "response": "b"}]), "sft")
    assert calls == [1]


# ------------------------------------------------------------------ wrong types


@pytest.mark.parametrize(("kind", "row", "field", "null_columns"), [
    ("sft", {"prompt": 42, "response": "r"}, "prompt", ["messages"]),
    ("sft", {"prompt": "p", "response": ["a", "list"]}, "response", ["messages"]),
    ("sft", {"messages": "just a string"}, "messages", ["messages"]),
    ("sft", {"messages": [{"role": "user", "content": 5}]}, "messages", ["messages"]),
    ("sft", ["not", "an", "object"], "row", ["messages"]),
    ("eval", {"question": "q", "contexts": {"a": "dict"}, "reference": "r"}, "contexts", ["contexts"]),
    ("eval", {"question": 3.5, "contexts": ["c"], "reference": "r"}, "question", ["question"]),
    ("eval", "a bare string", "row", ["question", "contexts", "reference"]),
    ("preference", {"prompt": "p", "chosen": True, "rejected": "r"}, "chosen", ["chosen"]),
])
def test_a_wrong_type_becomes_null_with_a_note(tmp_path, kind, row, field, null_columns):
    good = {"sft": {"prompt": "fine", "response": "row"},
            "eval": {"question": "fine", "contexts": ["c"], "reference": "row"},
            "preference": {"prompt": "fine", "chosen": "a", "rejected": "b"}}[kind]
    path = _jsonl(tmp_path / "typed.jsonl", [good, row, good])
    got = _read(path, kind)
    assert len(got) == 3  # the row is kept: its contract decides
    assert got[0]["schema_errors"] is None and got[2]["schema_errors"] is None
    bad = got[1]
    assert bad["source_line"] == 2
    assert bad["schema_errors"] is not None and bad["schema_errors"].startswith(f"{field}:")
    for column in null_columns:
        assert bad[column] is None
    if kind == "eval" and field != "row":  # the other fields survive
        assert {c for c in ("question", "contexts", "reference") if bad[c] is not None} == \
            {"question", "contexts", "reference"} - set(null_columns)


# ------------------------------------------------------------------ unreadable input


def _problem_lines(err: InputError) -> list[int | None]:
    return [p.line for p in err.problems]


def test_malformed_json_names_file_and_line(tmp_path):
    lines = [json.dumps({"prompt": f"p{i}", "response": "r"}) for i in range(6)]
    lines[3] = '{"prompt": "broken", "response": '
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        _read(path, "sft")
    assert _problem_lines(err.value) == [4]
    assert f"{path}:4:" in str(err.value)
    assert "malformed JSON" in str(err.value)


def test_malformed_json_in_a_later_block(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK_BYTES", 200)
    lines = [json.dumps({"prompt": f"question {i}", "response": f"answer {i}"}) for i in range(30)]
    size = 0
    for index, line in enumerate(lines):  # noqa: B007 (index is used after the loop)
        if size >= 2 * 200 + 10:
            break
        size += len(line) + 1
    lines[index] = lines[index][:-5]
    path = tmp_path / "late.jsonl"
    path.write_text("\n".join(lines) + "\n")
    blocks = list(readers._read_blocks(path.open("rb")))
    assert len(blocks) > 3
    assert sum(b.count(b"\n") for b in blocks[:2]) < index + 1  # the bad line is in the third block or later
    with pytest.raises(InputError) as err:
        _read(path, "sft")
    assert _problem_lines(err.value) == [index + 1]
    assert f"{path}:{index + 1}:" in str(err.value)


def test_invalid_utf8_names_the_line(tmp_path, monkeypatch):
    lines = [json.dumps({"prompt": f"p{i}", "response": "r"}).encode() for i in range(8)]
    lines[5] = b'{"prompt": "caf\xe9", "response": "latin-1"}'
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError) as err:
        _read(path, "sft")
    assert _problem_lines(err.value) == [6]
    assert "UTF-8" in str(err.value)
    monkeypatch.setattr(readers, "BLOCK_BYTES", 64)  # and when the bad line is in a later block
    with pytest.raises(InputError) as err:
        _read(path, "sft")
    assert _problem_lines(err.value) == [6]


def test_more_than_twenty_problems_are_cut_short(tmp_path):
    lines = ['{"prompt": "ok", "response": "fine"}'] + ["{not json" for _ in range(40)]
    path = tmp_path / "awful.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        _read(path, "sft")
    text = str(err.value)
    assert len(err.value.problems) > MAX_REPORTED_PROBLEMS
    shown = [line for line in text.splitlines() if line.startswith("  - ")]
    assert shown == [f"  - {path}:{n}: {err.value.problems[n - 2].message}" for n in range(2, 22)]
    assert f"{path}:22:" not in text
    assert "and more" in text


def test_exactly_twenty_problems_are_all_shown(tmp_path):
    lines = ["{bad" for _ in range(MAX_REPORTED_PROBLEMS)]
    path = tmp_path / "twenty.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        _read(path, "sft")
    assert _problem_lines(err.value) == list(range(1, 21))
    assert "and more" not in str(err.value)


# =============================================================================================
# JSON
# =============================================================================================


def test_a_json_array_file(tmp_path):
    rows = [{"prompt": "a", "response": "b", "source": "demo"}, {"instruction": "c", "output": "d"},
            {"prompt": 7, "response": "e"}]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, indent=2))
    got = _read(path, "sft", chunk_rows=2)
    assert [r["messages"] for r in got] == [_chat("a", "b"), _chat("c", "d"), None]
    assert [r["source_line"] for r in got] == [1, 2, 3]  # position in the array
    assert [r["source"] for r in got] == ["demo", "ingest", "ingest"]
    assert got[2]["schema_errors"].startswith("prompt:")


def test_json_lines_under_a_json_name(tmp_path):
    rows = [{"question": "q", "contexts": ["c"], "reference": "r"}, {"question": "q2", "context": "c2",
                                                                     "reference": "r2"}]
    path = _jsonl(tmp_path / "lines.json", rows, blank_after=(0,))
    got = _read(path, "eval")
    assert [(r["question"], r["contexts"]) for r in got] == [("q", ["c"]), ("q2", ["c2"])]
    assert [r["source_line"] for r in got] == [1, 3]


def test_a_malformed_json_array_names_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"prompt": "a", "response": "b"},\n  {"prompt": "c", "response": }\n]\n')
    with pytest.raises(InputError) as err:
        _read(path, "sft")
    assert _problem_lines(err.value) == [3]


def test_an_empty_json_file_has_no_rows(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("  \n")
    assert _read(path, "sft") == []


# =============================================================================================
# CSV
# =============================================================================================


def _csv(path: Path, header: list[str], records: list[list[str]], *, bom: bool = False) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(records)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode())
    return path


def test_csv_eval_with_json_lists_in_cells(tmp_path):
    path = _csv(tmp_path / "eval.csv", ["question", "contexts", "reference", "source"], [
        ["Q1", json.dumps(["first passage", "second, with comma"]), "R1", "demo"],
        ["Q2", "a single plain passage", "R2", ""],
        ["Q3", "", "R3", "feedback"],
    ], bom=True)
    got = _read(path, "eval", default_source="csv-ingest")
    assert [(r["question"], r["contexts"], r["reference"]) for r in got] == [
        ("Q1", ["first passage", "second, with comma"], "R1"), ("Q2", ["a single plain passage"], "R2"),
        ("Q3", None, "R3")]
    assert [r["source"] for r in got] == ["demo", "csv-ingest", "feedback"]
    assert [r["source_line"] for r in got] == [2, 3, 4]  # the header is line 1


def test_csv_with_a_bom_keeps_the_first_column_name(tmp_path):
    path = _csv(tmp_path / "bom.csv", ["prompt", "response"], [["hello", "world"]], bom=True)
    assert [r["messages"] for r in _read(path, "sft")] == [_chat("hello", "world")]


def test_csv_sft_messages_as_json_and_flat_columns(tmp_path):
    path = _csv(tmp_path / "chat.csv", ["messages", "prompt", "response", "system"], [
        [json.dumps(CHAT), "", "", ""],
        ["", "Where?", "Here.", "Be terse."],
        ["", "Only a prompt", "", ""],
    ])
    got = _read(path, "sft", chunk_rows=1)
    assert [r["messages"] for r in got] == [CHAT, _chat("Where?", "Here.", "Be terse."), None]
    assert all(r["schema_errors"] is None for r in got)  # missing, not mistyped


def test_csv_line_numbers_with_a_multi_line_cell(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('prompt,response\n"first line\nsecond line",answer\nnext,row\n')
    got = _read(path, "sft")
    assert got[0]["messages"] == _chat("first line\nsecond line", "answer")
    assert [r["source_line"] for r in got] == [2, 4]  # each row's line is where it starts


def test_csv_malformed_json_cell_names_the_line(tmp_path):
    path = _csv(tmp_path / "bad.csv", ["question", "contexts", "reference"], [
        ["Q1", '["fine"]', "R1"], ["Q2", '["unterminated', "R2"], ["Q3", '["fine"]', "R3"]])
    with pytest.raises(InputError) as err:
        _read(path, "eval")
    assert _problem_lines(err.value) == [3]
    assert "contexts" in str(err.value) and f"{path}:3:" in str(err.value)


def test_csv_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"prompt,response\nq1,a1\nq2,a2\nq3,caf\xe9\nq4,a4\n")
    with pytest.raises(InputError) as err:
        _read(path, "sft")
    assert "UTF-8" in str(err.value)
    assert _problem_lines(err.value) == [4]


# =============================================================================================
# Parquet and Hugging Face datasets
# =============================================================================================


def test_parquet_with_flat_columns_across_batches(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"instruction": [f"p{i}" for i in range(5)],
                             "output": [f"r{i}" if i != 3 else None for i in range(5)],
                             "source": ["demo", None, "feedback", None, "demo"]}), path)
    got = _read(path, "sft", default_source="pq", chunk_rows=2)
    assert [r["messages"] for r in got] == [_chat(f"p{i}", f"r{i}") if i != 3 else None for i in range(5)]
    assert [r["source_line"] for r in got] == [1, 2, 3, 4, 5]
    assert [r["source"] for r in got] == ["demo", "pq", "feedback", "pq", "demo"]


def test_parquet_with_messages_and_a_mistyped_column(tmp_path):
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.table({"messages": [CHAT, None], "prompt": [None, "p"], "response": [None, "r"]}), path)
    assert [r["messages"] for r in _read(path, "sft")] == [CHAT, _chat("p", "r")]
    typed = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"question": ["q1", "q2"], "contexts": [["c"], ["d"]], "reference": [1, 2]}), typed)
    got = _read(typed, "eval")
    assert [r["reference"] for r in got] == [None, None]
    assert all(r["schema_errors"].startswith("reference:") for r in got)
    assert [r["source_line"] for r in got] == [1, 2]


def test_an_unreadable_parquet_file(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(InputError) as err:
        _read(path, "sft")
    assert str(path) in str(err.value)


def test_a_saved_dataset_and_dataset_dict(tmp_path):
    from datasets import Dataset, DatasetDict

    single = tmp_path / "single"
    Dataset.from_dict({"user_input": ["q1", "q2", "q3"], "retrieved_contexts": [["a"], ["b", "c"], []],
                       "ground_truth": ["r1", "r2", "r3"]}).save_to_disk(str(single))
    got = _read(single, "eval", fmt="hf", chunk_rows=2)
    assert [(r["question"], r["contexts"], r["reference"]) for r in got] == [
        ("q1", ["a"], "r1"), ("q2", ["b", "c"], "r2"), ("q3", [], "r3")]
    assert [r["source_line"] for r in got] == [1, 2, 3]
    assert {r["source_file"] for r in got} == {str(single)}

    splits = tmp_path / "splits"
    DatasetDict({"train": Dataset.from_dict({"messages": [CHAT, CHAT[:1]]}),
                 "test": Dataset.from_dict({"prompt": ["p"], "response": ["r"], "source": ["demo"]})}
                ).save_to_disk(str(splits))
    got = _read(splits, "sft", fmt="hf")
    assert [r["messages"] for r in got] == [CHAT, CHAT[:1], _chat("p", "r")]
    assert [(r["source_file"], r["source_line"]) for r in got] == [
        (f"{splits}[train]", 1), (f"{splits}[train]", 2), (f"{splits}[test]", 1)]
    assert [r["source"] for r in got] == ["ingest", "ingest", "demo"]


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        read_source_file(SourceFile(str(tmp_path / "x.xml"), "xml"), "sft", "s", 10)
