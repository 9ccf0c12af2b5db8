"""Running a contract with Great Expectations (ephemeral, in process) on
batches prepared the way ingest prepares them, the publish/quarantine/reject
decision, and offline Data Docs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sluice.core.config import CleaningConfig
from sluice.core.data.contracts import OnFailure, load_contract
from sluice.core.data.data_docs import remote_asset_references
from sluice.core.data.prepare import PreparedBatch, prepare_batch, read_frame
from sluice.core.data.readers import SourceFile
from sluice.core.data.validation import RuleOutcome, decide_batch, validate_batch
from tests.conftest import REPO_ROOT

CONTRACTS = REPO_ROOT / "demo" / "contracts"  # the demo's: its sft contract allows only some sources
WORDS = ("river barge lock keeper water meadow willow heron towpath bridge weir mill ferry reed channel bank "
         "gravel tide current mooring rope lantern boatyard harbour quay estuary marsh ditch culvert pump").split()


# ---------------------------------------------------------------------------------------------
# decide_batch
# ---------------------------------------------------------------------------------------------


def _outcome(level: str = "dataset", success: bool = False, error: str | None = None,
             description: str = "at most 20.0% duplicates", observed: object = 0.5) -> RuleOutcome:
    return RuleOutcome(rule=f"{level}.x", description=description, level=level, success=success,
                       observed=observed, error=error)


FAIL = OnFailure(action="fail")
QUARANTINE_10 = OnFailure(action="quarantine", max_invalid_fraction=0.1)


@pytest.mark.parametrize(("on_failure", "checked", "invalid", "outcomes", "decision", "said"), [
    (FAIL, 10, 0, [], "publish", []),
    (FAIL, 10, 0, [_outcome(success=True)], "publish", []),
    (FAIL, 10, 1, [], "reject", ["1 of 10 rows", "fail"]),
    (FAIL, 250, 7, [], "reject", ["7 of 250 rows"]),
    (QUARANTINE_10, 100, 0, [], "publish", []),
    (QUARANTINE_10, 100, 5, [], "publish_with_quarantine", ["5 invalid row(s) quarantined", "5.0%"]),
    (QUARANTINE_10, 100, 10, [], "publish_with_quarantine", ["10 invalid row(s) quarantined", "10.0%"]),
    (QUARANTINE_10, 100, 11, [], "reject", ["11 of 100 rows", "11.0%", "10.0%"]),
    (QUARANTINE_10, 30, 3, [], "publish_with_quarantine", ["3 invalid row(s)"]),  # 0.1 exactly, as a float
    (QUARANTINE_10, 30, 4, [], "reject", ["4 of 30 rows"]),
    (OnFailure(action="quarantine"), 10, 1, [], "reject", ["1 of 10 rows"]),  # bound 0: nothing may be set aside
    (OnFailure(action="quarantine", max_invalid_fraction=1.0), 4, 4, [], "publish_with_quarantine",
     ["4 invalid row(s)", "100.0%"]),
    (QUARANTINE_10, 0, 0, [], "publish", []),
    (FAIL, 10, 0, [_outcome()], "reject", ["at most 20.0% duplicates", "observed 0.5"]),
    (QUARANTINE_10, 100, 5, [_outcome(description="10–1000 rows published", observed=5)], "reject",
     ["10–1000 rows published", "observed 5"]),
    (FAIL, 10, 0, [_outcome(level="row", success=False, error="column missing", description="source is set")],
     "reject", ["source is set", "could not run", "column missing"]),
    (QUARANTINE_10, 10, 0, [_outcome(error="boom", observed=None)], "reject", ["could not run (boom)"]),
])
def test_decide_batch(on_failure, checked, invalid, outcomes, decision, said):
    got, reasons = decide_batch(on_failure, checked, invalid, outcomes)
    assert got == decision
    if decision == "publish":
        assert reasons == []
    else:
        text = "\n".join(reasons)
        for fragment in said:
            assert fragment in text, (fragment, reasons)


def test_a_failed_row_rule_is_judged_by_its_rows_not_by_itself():
    """A row rule's failure reaches the decision through the invalid-row count only."""
    outcomes = [_outcome(level="row", description="every turn has text")]
    assert decide_batch(QUARANTINE_10, 100, 2, outcomes)[0] == "publish_with_quarantine"
    assert decide_batch(FAIL, 100, 2, outcomes)[0] == "reject"


def test_every_reason_is_given_at_once():
    outcomes = [_outcome(description="10–1000 rows published", observed=3),
                _outcome(description="at most 0.0% of rows with PII after redaction", observed=0.5),
                _outcome(level="row", error="no such column", description="chat roles follow x")]
    decision, reasons = decide_batch(FAIL, 6, 3, outcomes)
    assert decision == "reject"
    assert len(reasons) == 4
    assert sum("could not run" in r for r in reasons) == 1
    assert sum("3 of 6 rows" in r for r in reasons) == 1


# ---------------------------------------------------------------------------------------------
# validate_batch on prepared batches
# ---------------------------------------------------------------------------------------------


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _sft_rows(count: int, seed: int = 0, source: str = "demo") -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": f"Question {seed}-{i}: {_sentence(rng, 8)}?", "response": f"Answer {i}: {_sentence(rng, 9)}.",
             "source": source} for i in range(count)]


def _eval_rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"question": f"Eval question {i}: {_sentence(rng, 7)}?", "contexts": [_sentence(rng, 12)],
             "reference": f"Reference {i}: {_sentence(rng, 6)}."} for i in range(count)]


def _preference_rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": f"Prompt {i}: {_sentence(rng, 7)}?", "chosen": f"Good {i}: {_sentence(rng, 6)}.",
             "rejected": f"Bad {i}: {_sentence(rng, 6)}."} for i in range(count)]


def _prepare(tmp_path: Path, rows: list, kind: str, config: CleaningConfig | None = None,
             name: str | None = None) -> tuple[pd.DataFrame, PreparedBatch]:
    path = tmp_path / (name or f"{kind}.jsonl")
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    batch = prepare_batch([SourceFile(str(path), "jsonl")], kind, config or CleaningConfig(),
                          tmp_path / f"work-{path.stem}", default_source="demo", chunk_rows=1000)
    return read_frame(batch.frame_path), batch


def _contract(kind: str):
    return load_contract(CONTRACTS / f"{kind}.yaml")


def _line_positions(frame: pd.DataFrame, lines: list[int]) -> list[int]:
    return [int(np.flatnonzero(frame["source_line"].to_numpy() == line)[0]) for line in lines]


def test_a_valid_sft_batch_is_published(tmp_path):
    frame, batch = _prepare(tmp_path, _sft_rows(20), "sft")
    assert batch.report.rows_out == 20
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate)
    summary = run.summary
    assert summary.decision == "publish"
    assert summary.reasons == []
    assert (summary.rows_checked, summary.rows_invalid, summary.rows_published) == (20, 0, 20)
    assert summary.contract_version == "1.0.0" and summary.kind == "sft"
    assert not run.invalid.any()
    assert set(run.reasons.tolist()) == {""}
    assert all(o.success for o in summary.outcomes)
    assert summary.failed_rules == []
    assert summary.dataset_stats == {"rows_published": 20, "duplicate_rate": 0.0, "pii_rate": 0.0}
    row_rules = {o.rule for o in summary.outcomes if o.level == "row"}
    assert {"schema.messages.required", "schema.types", "rules.role_order", "rules.allowed_sources",
            "rules.no_overlap_with"} <= row_rules


def test_a_few_invalid_sft_rows_are_quarantined(tmp_path):
    rows = _sft_rows(58)
    rows.insert(10, {"prompt": "Where does the towpath end today?", "response": "At the old mill bridge.",
                     "source": "scraped-forum"})  # line 11: a source the contract does not allow
    rows.insert(30, {"prompt": 12345, "response": "A number is not a question.", "source": "demo"})  # line 31
    frame, batch = _prepare(tmp_path, rows, "sft")
    assert len(frame) == 60
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate)
    summary = run.summary
    assert summary.decision == "publish_with_quarantine"
    assert summary.rows_invalid == 2
    assert summary.rows_published == 58
    assert summary.invalid_fraction == pytest.approx(2 / 60)
    assert "2 invalid row(s) quarantined" in summary.reasons[0]

    bad_source, bad_type = _line_positions(frame, [11, 31])
    assert np.flatnonzero(run.invalid).tolist() == sorted([bad_source, bad_type])
    assert run.reasons[bad_source] == "source is one of demo, feedback, support-tickets"
    typed = run.reasons[bad_type]
    assert "messages is present" in typed
    assert "every field has its declared type" in typed
    assert "prompt: expected text, got int" in typed
    assert not typed.endswith("; ")
    assert all(r == "" for i, r in enumerate(run.reasons) if i not in (bad_source, bad_type))

    by_rule = {o.rule: o for o in summary.outcomes}
    assert by_rule["rules.allowed_sources"].failing_ids == [frame.loc[bad_source, "id"]]
    assert by_rule["rules.allowed_sources"].unexpected_count == 1
    assert by_rule["schema.types"].failing_ids == [frame.loc[bad_type, "id"]]
    assert by_rule["rules.role_order"].success is False  # no messages: no roles either
    assert all(o.success for o in summary.outcomes if o.level == "dataset")


def test_bad_chats_are_named_by_the_rule_they_break(tmp_path):
    rows = _sft_rows(40)
    rows.append({"messages": [{"role": "assistant", "content": "I speak first, which is wrong here."},
                              {"role": "user", "content": "And then the user asks something."}], "source": "demo"})
    rows.append({"messages": [{"role": "user", "content": "Is an empty answer fine for training?"},
                              {"role": "assistant", "content": ""}], "source": "demo"})
    frame, batch = _prepare(tmp_path, rows, "sft")
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate)
    assert run.summary.decision == "publish_with_quarantine"
    wrong_order, empty_turn = _line_positions(frame, [41, 42])
    assert np.flatnonzero(run.invalid).tolist() == [wrong_order, empty_turn]
    assert run.reasons[wrong_order] == "chat roles follow 'system? (user assistant)+'"
    assert run.reasons[empty_turn] == "every turn has text"


def test_too_many_invalid_sft_rows_reject_the_batch(tmp_path):
    rows = _sft_rows(17) + _sft_rows(3, seed=99, source="unknown-scraper")
    frame, batch = _prepare(tmp_path, rows, "sft")
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate)
    summary = run.summary
    assert summary.decision == "reject"
    assert summary.rows_invalid == 3
    assert summary.rows_published == 0
    assert any("3 of 20 rows" in r and "5.0%" in r for r in summary.reasons)
    assert run.invalid.tolist() == [False] * 17 + [True] * 3  # still says which rows were invalid


def test_one_invalid_eval_row_rejects_the_batch(tmp_path):
    rows = _eval_rows(12)
    rows[4]["contexts"] = []
    frame, batch = _prepare(tmp_path, rows, "eval")
    run = validate_batch(_contract("eval"), frame, batch.report.duplicate_rate)
    summary = run.summary
    assert summary.decision == "reject"
    assert summary.rows_invalid == 1
    assert any("1 of 12 rows" in r for r in summary.reasons)
    assert run.invalid.tolist() == [i == 4 for i in range(12)]
    assert run.reasons[4] == "at least 1 context passage(s)"
    assert {o.rule for o in summary.failed_rules} == {"rules.min_contexts"}


def test_a_preference_row_whose_answers_agree_is_quarantined(tmp_path):
    rows = _preference_rows(15)
    rows[6]["rejected"] = rows[6]["chosen"]
    frame, batch = _prepare(tmp_path, rows, "preference")
    run = validate_batch(_contract("preference"), frame, batch.report.duplicate_rate)
    assert run.summary.decision == "publish_with_quarantine"
    assert np.flatnonzero(run.invalid).tolist() == [6]
    assert run.reasons[6] == "chosen and rejected differ"


def test_too_few_rows_reject(tmp_path):
    frame, batch = _prepare(tmp_path, _sft_rows(5), "sft")
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate)
    summary = run.summary
    assert summary.decision == "reject"
    assert summary.rows_invalid == 0
    rows_rule = next(o for o in summary.outcomes if o.rule == "dataset.rows")
    assert rows_rule.success is False
    assert rows_rule.observed == 5
    assert any("rows published" in r and "observed 5" in r for r in summary.reasons)


def test_quarantined_rows_do_not_count_as_published_rows(tmp_path):
    rows = _sft_rows(10)
    rows[0]["source"] = "unknown"
    frame, batch = _prepare(tmp_path, rows, "sft")
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate)
    # 1 of 10 is over the 5% bound anyway; 9 published rows are also under the minimum of 10
    assert run.summary.dataset_stats["rows_published"] == 9
    assert run.summary.decision == "reject"
    assert any("observed 9" in r for r in run.summary.reasons)


def test_a_high_duplicate_rate_rejects(tmp_path):
    unique = _sft_rows(12)
    frame, batch = _prepare(tmp_path, unique + [dict(r) for r in unique], "sft")
    assert batch.report.duplicate_rate == pytest.approx(0.5)
    assert len(frame) == 12
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate)
    summary = run.summary
    assert summary.decision == "reject"
    assert summary.rows_invalid == 0
    assert summary.dataset_stats["duplicate_rate"] == pytest.approx(0.5)
    assert [o.rule for o in summary.failed_rules] == ["dataset.max_duplicate_rate"]
    assert any("duplicates" in r and "0.5" in r for r in summary.reasons)


def test_pii_left_in_the_batch_rejects(tmp_path):
    rows = _sft_rows(12)
    rows[3]["response"] = "Write to nell.cobb@example.com for the key to the lock."
    frame, batch = _prepare(tmp_path, rows, "sft", config=CleaningConfig(redact_pii=False))
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate)
    summary = run.summary
    assert summary.decision == "reject"
    assert summary.rows_invalid == 0
    assert summary.dataset_stats["pii_rate"] == pytest.approx(1 / 12)
    assert [o.rule for o in summary.failed_rules] == ["dataset.max_pii_rate"]
    assert any("PII" in r for r in summary.reasons)

    frame, batch = _prepare(tmp_path, rows, "sft", name="redacted.jsonl")  # redacted: fine
    assert validate_batch(_contract("sft"), frame, batch.report.duplicate_rate).summary.decision == "publish"


def test_a_prompt_already_published_as_an_eval_question_is_invalid(tmp_path):
    eval_rows = _eval_rows(3)
    eval_rows[1]["question"] = "  WHERE does the   Towpath end?  "
    eval_frame, _ = _prepare(tmp_path, eval_rows, "eval")
    published = set(eval_frame["overlap_key"])  # what main holds for eval

    rows = _sft_rows(30)
    rows[7]["prompt"] = "Where does the towpath end?"
    frame, batch = _prepare(tmp_path, rows, "sft")
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate, published_prompt_keys=published)
    assert np.flatnonzero(run.invalid).tolist() == [7]
    assert run.reasons[7] == "not already in published eval data"
    assert run.summary.decision == "publish_with_quarantine"
    overlap = next(o for o in run.summary.outcomes if o.rule == "rules.no_overlap_with")
    assert overlap.failing_ids == [frame.loc[7, "id"]]

    # a key of one row, given directly, marks exactly that row
    run = validate_batch(_contract("sft"), frame, 0.0, published_prompt_keys={frame.loc[12, "overlap_key"]})
    assert np.flatnonzero(run.invalid).tolist() == [12]
    assert validate_batch(_contract("sft"), frame, 0.0, published_prompt_keys=set()).summary.decision == "publish"


def test_data_docs_are_offline_and_name_failing_rows(tmp_path):
    rows = _sft_rows(30)
    rows[5]["source"] = "unknown-scraper"
    frame, batch = _prepare(tmp_path, rows, "sft")
    docs = tmp_path / "docs"
    run = validate_batch(_contract("sft"), frame, batch.report.duplicate_rate, docs_dir=docs)
    assert run.summary.decision == "publish_with_quarantine"
    assert (docs / "index.html").is_file()
    assert remote_asset_references(docs) == []
    failing_id = frame.loc[5, "id"]
    passing_id = frame.loc[6, "id"]
    pages = sorted((docs / "validations").rglob("*.html"))
    assert pages
    with_id = [p for p in pages if failing_id in p.read_text(encoding="utf-8")]
    assert len(with_id) == 1
    text = with_id[0].read_text(encoding="utf-8")
    assert "source is one of demo, feedback, support-tickets" in text
    assert "unknown-scraper" in text
    assert passing_id not in text
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert "<script" not in index.lower()
