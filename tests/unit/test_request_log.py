"""The one reader of the serving request log (sluice.core.request_log) that the canary, the shadow and the
monitor share: real files, as `sluice serve` appends them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluice.core.request_log import chat_text, log_records, record_time


def test_records_in_order_blank_lines_skipped_and_a_torn_last_line_not_yet_read(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    log.write_text('{"id": "a", "canary": true}\n\n{"id": "b"}\n{"id": "torn", "ti')
    assert [r["id"] for r in log_records(log)] == ["a", "b"]
    assert [r["id"] for r in log_records(log, ['"canary": true'])] == ["a"]  # marks: only lines holding one
    assert list(log_records(tmp_path / "missing.jsonl")) == []  # no log yet: no traffic yet


def test_a_corrupt_line_is_an_error_naming_file_and_line_unless_marks_skip_it(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    log.write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(ValueError, match=r"requests.jsonl:2 is not a JSON record"):
        list(log_records(log))
    assert list(log_records(log, ['"id"'])) == [{"id": "a"}]  # never parsed: it holds no mark


def test_a_naive_time_is_utc_and_a_missing_one_names_the_record_and_file(tmp_path: Path) -> None:
    assert record_time({"time": "2026-12-01T12:00:00"}) == datetime(2026, 12, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"requests.jsonl: record 'x' has no ISO 'time'"):
        record_time({"id": "x"}, tmp_path / "requests.jsonl")


def test_a_chat_prompt_is_its_turns_one_a_line() -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who keeps it?"}]
    assert chat_text(chat) == "system: Be brief.\nuser: Who keeps it?"
    assert chat_text("plain") == "plain" and chat_text(None) == ""
