"""Contracts, pinned where mutation testing (tools/mutation.py, scope "validation") found them
unchecked: the exact words of a contract error (where, which key, what is wrong, one problem per
line), and the descriptions that reports and quarantine reasons show for each compiled rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.core.data.contracts import ContractError, compile_checks, load_contract
from tests.unit.contract_files import write_contract


def _error_of(path: Path) -> str:
    with pytest.raises(ContractError) as raised:
        load_contract(path)
    return str(raised.value)


def test_each_problem_is_one_line_that_names_where_and_what(tmp_path: Path) -> None:
    path = write_contract(tmp_path, """\
        version: '1.0'
        schema:
          messages:
            required: true
        """)
    # no kind at all: no line to name, so the file; a key missing under `messages`: the line of
    # the nearest key that is there; a validator's message without pydantic's "Value error, "
    assert _error_of(path) == (
        f"invalid contract {path}:\n"
        f"  - {path}: kind: Field required\n"
        f"  - {path}:1: version: '1.0' is not a version like 1.0.0\n"
        f"  - {path}:3: schema.messages.type: Field required")


def test_a_problem_of_the_whole_contract_is_named_at_the_file(tmp_path: Path) -> None:
    path = write_contract(tmp_path, """\
        kind: eval
        version: 1.0.0
        schema:
          question: {type: string}
          contexts: {type: list<string>}
          reference: {type: string}
        rules:
          non_empty_turns: true
        """)
    assert _error_of(path) == (f"invalid contract {path}:\n  - {path}: (top level): "
                               "rules.role_order / rules.non_empty_turns: only for sft data")


def test_every_compiled_rule_says_what_it_checks(tmp_path: Path) -> None:
    path = write_contract(tmp_path, """\
        kind: preference
        version: 1.0.0
        schema:
          prompt: {type: list<message>}
          chosen: {type: string}
          rejected: {type: string}
        rules:
          non_empty: [chosen]
          chosen_differs_from_rejected: true
          tokens: {min: 3, max: 700}
          allowed_sources: [demo, feedback]
          patterns:
            - {field: chosen, regex: '^[A-Z]'}
            - {field: rejected, regex: 'http', must: not_match}
            - {field: prompt, regex: '\\?', description: asks something}
          no_overlap_with: [eval, sft]
        dataset:
          rows: {min: 2, max: 9}
        """)
    assert [(c.rule, c.description) for c in compile_checks(load_contract(path))] == [
        ("schema.types", "every field has its declared type"),
        ("rules.non_empty.chosen", "chosen is not empty"),
        ("rules.chosen_differs_from_rejected", "chosen and rejected differ"),
        ("rules.tokens", "3–700 tokens"),
        ("rules.allowed_sources", "source is one of demo, feedback"),
        ("rules.patterns[0]", "chosen matches /^[A-Z]/"),
        ("rules.patterns[1]", "rejected avoids /http/"),
        ("rules.patterns[2]", "asks something"),
        ("rules.no_overlap_with", "not already in published eval, sft data"),
        ("dataset.rows", "2–9 rows published"),
    ]
