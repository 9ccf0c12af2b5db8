"""Contracts and validation, pinned where mutation testing (tools/mutation.py, scope
"validation") found them unchecked: the messages that name what is allowed, how an error that
Great Expectations caught inside a rule is read, and how observed values become plain JSON."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sluice.core.config import CleaningConfig
from sluice.core.data.contracts import Check, Contract, ContractError, contract_path, load_contract, role_order_regex
from sluice.core.data.prepare import prepare_batch, read_frame
from sluice.core.data.readers import SourceFile
from sluice.core.data.validation import _error, _expectation, _import_gx, _plain, validate_batch
from tests.unit.contract_files import write_contract
from tests.conftest import REPO_ROOT

DEMO_CONTRACTS = REPO_ROOT / "demo" / "contracts"  # the demo's: its sft contract allows only some sources


def test_an_unknown_kind_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ContractError) as raised:
        contract_path(tmp_path, "chat")
    assert str(raised.value) == "unknown dataset kind 'chat': expected one of sft, eval, preference"
    assert contract_path(tmp_path, "eval") == tmp_path / "eval.yaml"


def test_an_unknown_role_names_the_known_ones() -> None:
    with pytest.raises(ValueError) as raised:
        role_order_regex("user robot+")
    assert str(raised.value) == "unknown role 'robot' (roles: system, user, assistant)"


@pytest.mark.parametrize(("exception_info", "error"), [
    (None, None),
    ({}, None),
    ({"raised_exception": True, "exception_message": "column 'x' missing"}, "column 'x' missing"),
    ({"raised_exception": False, "exception_message": "ignored"}, None),
    # the per-metric shape: every message that was raised, in order
    ({"a": {"raised_exception": True, "exception_message": "first"},
      "b": {"raised_exception": False, "exception_message": "not raised"},
      "c": {"raised_exception": True, "exception_message": "second"}}, "first; second"),
    ({"a": {"raised_exception": False, "exception_message": "not raised"}}, None),
])
def test_an_error_inside_a_rule_is_read_from_either_shape(exception_info: dict | None, error: str | None) -> None:
    assert _error(SimpleNamespace(exception_info=exception_info)) == error


def test_observed_values_become_plain_json() -> None:
    observed = {"count": np.int64(3), "share": np.float32(0.5), "values": (float("nan"), pd.NA, "x", 1),
                "nested": [{"v": np.nan}]}
    plain = _plain(observed)
    assert plain == {"count": 3, "share": 0.5, "values": [None, None, "x", 1], "nested": [{"v": None}]}
    assert type(plain["count"]) is int and type(plain["share"]) is float


def test_a_numpy_nan_becomes_null_not_nan() -> None:
    # a report with NaN in it is not valid JSON; numpy's NaN must become None like Python's
    assert _plain({"mean": np.float64("nan"), "values": [np.float32("nan")]}) == {"mean": None, "values": [None]}


# --- rules run by Great Expectations on prepared batches -------------------------------------


def _frame(tmp_path: Path, kind: str, rows: list[dict]) -> pd.DataFrame:
    path = tmp_path / f"{kind}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    batch = prepare_batch([SourceFile(str(path), "jsonl")], kind, CleaningConfig(), tmp_path / f"work-{kind}",
                          default_source="demo", chunk_rows=1000)
    return read_frame(batch.frame_path).sort_values("source_line").reset_index(drop=True)


def _contract(tmp_path: Path, text: str) -> Contract:
    return load_contract(write_contract(tmp_path, text))


def test_token_bounds_and_non_empty_turns_include_their_edges(tmp_path: Path) -> None:
    contract = _contract(tmp_path, """\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>, required: true}
        rules:
          non_empty_turns: true
          tokens: {min: 3, max: 5}
        dataset:
          rows: {min: 1, max: 2}
        on_failure: {action: quarantine, max_invalid_fraction: 1.0}
        """)
    rows = [{"prompt": "weir lock", "response": "barge"},                  # 3 tokens: the lower edge
            {"prompt": "heron willow reed mill", "response": "y"},        # 5 tokens, a one-character turn
            {"prompt": "quay", "response": "tide"},                       # 2: too short
            {"prompt": "ferry rope lantern mooring pump", "response": "ditch"},  # 6: too long
            {"prompt": "marsh culvert gravel", "response": ""},           # an empty turn
            {"prompt": "bank channel current", "response": "meadow"}]     # 4
    run = validate_batch(contract, _frame(tmp_path, "sft", rows), 0.0)
    assert run.invalid.tolist() == [False, False, True, True, True, False]
    assert run.reasons.tolist() == ["", "", "3–5 tokens", "3–5 tokens", "every turn has text", ""]
    # three rows would be published, one more than the contract's dataset.rows allows
    assert (run.summary.decision, run.summary.reasons) == ("reject", ["1–2 rows published — observed 3"])


def test_a_one_character_answer_is_not_empty(tmp_path: Path) -> None:
    contract = _contract(tmp_path, """\
        kind: preference
        version: 1.0.0
        schema:
          prompt: {type: list<message>}
          chosen: {type: string}
          rejected: {type: string}
        rules:
          non_empty: [chosen]
        on_failure: {action: quarantine, max_invalid_fraction: 1.0}
        """)
    rows = [{"prompt": "Pick one?", "chosen": "y", "rejected": "no"},
            {"prompt": "Pick another?", "chosen": "", "rejected": "never"}]
    run = validate_batch(contract, _frame(tmp_path, "preference", rows), 0.0)
    assert run.invalid.tolist() == [False, True]
    assert run.reasons.tolist() == ["", "chosen is not empty"]


SFT_ROWS = [{"prompt": f"Question {i}: where does the towpath meet the weir?", "response": f"At bridge {i}."}
            for i in range(12)]


def test_a_rule_that_cannot_run_rejects_the_batch_and_says_why(tmp_path: Path) -> None:
    # a frame without the column a rule reads: GX raises inside the rule, and that must not pass
    frame = _frame(tmp_path, "sft", SFT_ROWS).drop(columns=["n_tokens"])
    summary = validate_batch(load_contract(DEMO_CONTRACTS / "sft.yaml"), frame, 0.0).summary
    broken = next(o for o in summary.outcomes if o.rule == "rules.tokens")
    assert (broken.success, broken.unexpected_count, broken.failing_ids) == (False, 0, [])
    assert broken.error is not None and 'column "n_tokens"' in broken.error and "does not exist" in broken.error
    assert summary.decision == "reject"
    assert summary.reasons == [f"{broken.description}: the check could not run ({broken.error})"]
    # a dataset rule reports a value, not rows: it counts no unexpected rows
    assert [(o.success, o.unexpected_count) for o in summary.outcomes if o.level == "dataset"] == [(True, 0)] * 3


def test_a_frame_without_ids_is_judged_by_row_position(tmp_path: Path) -> None:
    rows = [*SFT_ROWS, {**SFT_ROWS[0], "prompt": "A question from elsewhere?", "source": "unknown-scraper"}]
    frame = _frame(tmp_path, "sft", rows).drop(columns=["id"])
    run = validate_batch(load_contract(DEMO_CONTRACTS / "sft.yaml"), frame, 0.0)
    assert run.invalid.tolist() == [False] * 12 + [True]
    failed = [(o.rule, o.unexpected_count, o.failing_ids) for o in run.summary.failed_rules]
    assert failed == [("rules.allowed_sources", 1, [])]  # no ids to name: none are made up


def test_an_expectation_shows_its_description_as_text_and_records_its_rule() -> None:
    gx = _import_gx()
    check = Check("rules.patterns[0]", "price in $ <= 5 & no ${vars}", "ExpectColumnValuesToMatchRegex",
                  (("column", "text_reference"), ("regex", "x")), "row")
    expectation = _expectation(gx, check, 7)
    # "$" would make GX read a template variable; markup is escaped because GX renders HTML
    assert expectation.description == "price in  &lt;= 5 &amp; no {vars}"
    assert expectation.meta == {"rule": "rules.patterns[0]", "index": 7}
