"""Data contracts: the bundled files load and compile, a bad contract is an
error that says where (file, line, key), and the role-order mini-language."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sluice.core.data.contracts import (
    Contract,
    ContractError,
    compile_checks,
    contract_path,
    load_contract,
    role_order_regex,
)
from sluice.core.data.kinds import CANONICAL, KINDS
from tests.conftest import REPO_ROOT
from tests.unit.contract_files import write_contract

CONTRACTS = REPO_ROOT / "data_contracts"
DEMO_CONTRACTS = REPO_ROOT / "demo" / "contracts"
BUNDLED = sorted(CONTRACTS.glob("*.yaml"))

# the smallest valid contract of each kind
MINIMAL = {
    "sft": """\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>, required: true}
        """,
    "eval": """\
        kind: eval
        version: 1.0.0
        schema:
          question: {type: string, required: true}
          contexts: {type: list<string>}
          reference: {type: string}
        """,
    "preference": """\
        kind: preference
        version: 1.0.0
        schema:
          prompt: {type: list<message>}
          chosen: {type: string}
          rejected: {type: string}
        """,
}


def _line_of(path: Path, needle: str) -> int:
    """1-based line of the only line of ``path`` that contains ``needle``."""
    hits = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if needle in line]
    assert len(hits) == 1, hits
    return hits[0]


# ---------------------------------------------------------------------------------------------
# the bundled contracts
# ---------------------------------------------------------------------------------------------


def test_there_is_one_bundled_contract_per_kind():
    assert [p.stem for p in BUNDLED] == sorted(KINDS)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_contract_loads_and_compiles(path):
    contract = load_contract(path)
    raw = yaml.safe_load(path.read_text())
    assert contract.kind == path.stem
    assert contract_path(CONTRACTS, contract.kind) == path
    assert re.fullmatch(r"\d+\.\d+\.\d+", contract.version)

    checks = compile_checks(contract)
    rules = [c.rule for c in checks]
    assert len(rules) == len(set(rules))
    row_rules = {c.rule for c in checks if c.level == "row"}
    dataset_rules = {c.rule for c in checks if c.level == "dataset"}

    required = {name for name, spec in raw["schema"].items() if spec.get("required")}
    assert required, "every bundled contract requires some columns"
    assert {f"schema.{name}.required" for name in required} <= row_rules
    assert not {r for r in row_rules if r.startswith("schema.") and r.endswith(".required")} - {
        f"schema.{name}.required" for name in required}
    assert "schema.types" in row_rules
    for check in checks:
        if check.rule.endswith(".required"):
            kwargs = dict(check.kwargs)
            assert kwargs["column"] == f"has_{check.rule.split('.')[1]}"
            assert kwargs["value_set"] == [True]

    assert dataset_rules == {f"dataset.{key}" for key in raw.get("dataset", {})}
    for check in checks:
        if check.level == "dataset":
            assert check.expectation == "ExpectColumnMaxToBeBetween"

    for key, value in raw.get("rules", {}).items():  # each row rule is checked
        if key == "non_empty":
            assert {f"rules.non_empty.{name}" for name in value} <= row_rules
        else:
            assert f"rules.{key}" in row_rules, key
    if contract.rules.role_order:
        role_check = next(c for c in checks if c.rule == "rules.role_order")
        assert dict(role_check.kwargs)["regex"] == role_order_regex(contract.rules.role_order)
        assert re.match(dict(role_check.kwargs)["regex"], "user,assistant,")
    # every column in the contract is a column of its kind
    assert set(contract.schema_) <= set(CANONICAL[contract.kind].names)


@pytest.mark.parametrize("kind", KINDS)
def test_the_demo_contracts_are_the_shipped_ones_with_the_demos_sources(kind):
    """The demo keeps its stricter rules to itself: a new user's source passes data_contracts/."""
    shipped, demo = load_contract(CONTRACTS / f"{kind}.yaml"), load_contract(DEMO_CONTRACTS / f"{kind}.yaml")
    assert shipped.rules.allowed_sources is None
    if kind == "sft":
        assert demo.rules.allowed_sources == ["demo", "feedback", "support-tickets"]
        strict_rules = demo.rules.model_copy(update={"allowed_sources": None})
        assert demo.model_copy(update={"rules": strict_rules, "version": shipped.version}) == shipped
    else:
        assert demo == shipped


def test_the_preference_prompt_is_a_chat():
    contract = load_contract(CONTRACTS / "preference.yaml")
    assert contract.version == "2.0.0" and contract.schema_["prompt"].type == "list<message>"


def test_compile_checks_follows_a_hand_written_contract(tmp_path):
    path = write_contract(tmp_path, """\
        kind: eval
        version: 2.3.4
        schema:
          question: {type: string, required: true}
          contexts: {type: list<string>, required: true}
          reference: {type: string}
        rules:
          patterns:
            - {field: reference, regex: '^[A-Z]', description: starts with a capital}
            - {field: question, regex: 'http', must: not_match}
        dataset:
          max_pii_rate: 0.25
        on_failure: {action: quarantine, max_invalid_fraction: 0.5}
        """)
    checks = compile_checks(load_contract(path))
    assert [(c.rule, c.level) for c in checks] == [
        ("schema.question.required", "row"), ("schema.contexts.required", "row"), ("schema.types", "row"),
        ("rules.patterns[0]", "row"), ("rules.patterns[1]", "row"), ("dataset.max_pii_rate", "dataset")]
    first, second = checks[3], checks[4]
    assert first.description == "starts with a capital"
    assert first.expectation == "ExpectColumnValuesToMatchRegex"
    assert dict(first.kwargs) == {"column": "text_reference", "regex": "^[A-Z]"}
    assert second.expectation == "ExpectColumnValuesToNotMatchRegex"
    assert "http" in second.description
    assert dict(checks[5].kwargs)["max_value"] == 0.25


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_contracts_are_valid(tmp_path, kind):
    contract = load_contract(write_contract(tmp_path, MINIMAL[kind]))
    assert contract.kind == kind
    assert contract.on_failure.action == "fail"
    assert [c.rule for c in compile_checks(contract) if c.level == "dataset"] == []


def test_contract_path_refuses_an_unknown_kind():
    with pytest.raises(ContractError, match="unknown dataset kind"):
        contract_path(CONTRACTS, "pretraining")


# ---------------------------------------------------------------------------------------------
# errors name the file, the line and the key
# ---------------------------------------------------------------------------------------------

UNKNOWN_KEYS = {
    "top level": ("""\
        kind: sft
        version: 1.0.0
        colour: blue
        schema:
          messages: {type: list<message>, required: true}
        """, "colour: blue", "colour"),
    "under rules": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>, required: true}
        rules:
          non_empty_turns: true
          max_turns: 8
        """, "max_turns", "rules.max_turns"),
    "under dataset": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>, required: true}
        dataset:
          rows: {min: 1, max: 10}
          max_dupe_rate: 0.1
        """, "max_dupe_rate", "dataset.max_dupe_rate"),
    "under dataset.rows": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>, required: true}
        dataset:
          rows:
            min: 1
            most: 10
        """, "most: 10", "dataset.rows.most"),
    "under a schema column": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages:
            type: list<message>
            required: true
            nullable: false
        """, "nullable", "schema.messages.nullable"),
    "under on_failure": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>, required: true}
        on_failure:
          action: quarantine
          notify: team@example.com
        """, "notify", "on_failure.notify"),
}


@pytest.mark.parametrize("case", list(UNKNOWN_KEYS), ids=list(UNKNOWN_KEYS))
def test_an_unknown_key_names_file_line_and_key(tmp_path, case):
    text, needle, dotted = UNKNOWN_KEYS[case]
    path = write_contract(tmp_path, text)
    line = _line_of(path, needle)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    message = str(err.value)
    assert str(path) in message
    assert f"{path}:{line}: {dotted}: unknown key" in message


def test_several_problems_are_reported_together(tmp_path):
    path = write_contract(tmp_path, """\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>, required: true, colour: red}
        rules:
          shouting: true
        """)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    message = str(err.value)
    assert f"{path}:{_line_of(path, 'colour')}: schema.messages.colour: unknown key" in message
    assert f"{path}:{_line_of(path, 'shouting')}: rules.shouting: unknown key" in message


BAD_CONTRACTS = {
    "column not of the kind": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>, required: true}
          prompt: {type: list<message>}
        """, ["schema.prompt", "not a column of sft data"]),
    "wrong declared type": ("""\
        kind: eval
        version: 1.0.0
        schema:
          question: {type: string}
          contexts: {type: string}
          reference: {type: string}
        """, ["schema.contexts.type", "'list<string>'"]),
    "integer line declared as string": ("""\
        kind: preference
        version: 1.0.0
        schema:
          prompt: {type: list<message>}
          chosen: {type: string}
          rejected: {type: string}
          source_line: {type: string}
        """, ["schema.source_line.type", "'integer'"]),
    "text field not described": ("""\
        kind: eval
        version: 1.0.0
        schema:
          question: {type: string}
          reference: {type: string}
        """, ["'contexts'", "not described"]),
    "rule of another kind": ("""\
        kind: eval
        version: 1.0.0
        schema:
          question: {type: string}
          contexts: {type: list<string>}
          reference: {type: string}
        rules:
          role_order: user assistant
        """, ["rules.role_order", "only for sft"]),
    "min_contexts outside eval": ("""\
        kind: preference
        version: 1.0.0
        schema:
          prompt: {type: list<message>}
          chosen: {type: string}
          rejected: {type: string}
        rules:
          min_contexts: 1
        """, ["rules.min_contexts", "only for eval"]),
    "a kind excluding itself": ("""\
        kind: eval
        version: 1.0.0
        schema:
          question: {type: string}
          contexts: {type: list<string>}
          reference: {type: string}
        rules:
          no_overlap_with: [eval]
        """, ["rules.no_overlap_with"]),
    "bad role order": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>}
        rules:
          role_order: user robot
        """, ["rules.role_order", "unknown role 'robot'"]),
    "non_empty on a list field": ("""\
        kind: eval
        version: 1.0.0
        schema:
          question: {type: string}
          contexts: {type: list<string>}
          reference: {type: string}
        rules:
          non_empty: [contexts]
        """, ["rules.non_empty", "'contexts'"]),
    "token bounds reversed": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>}
        rules:
          tokens: {min: 50, max: 10}
        """, ["rules.tokens", "min is greater than max"]),
    "max_invalid_fraction with fail": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>}
        on_failure:
          action: fail
          max_invalid_fraction: 0.1
        """, ["on_failure.max_invalid_fraction", "quarantine"]),
    "unknown action": ("""\
        kind: sft
        version: 1.0.0
        schema:
          messages: {type: list<message>}
        on_failure:
          action: ignore
        """, ["on_failure.action"]),
    "unknown kind": ("""\
        kind: pretraining
        version: 1.0.0
        schema: {}
        """, ["kind"]),
}


@pytest.mark.parametrize("case", list(BAD_CONTRACTS), ids=list(BAD_CONTRACTS))
def test_a_contract_that_does_not_fit_is_an_error(tmp_path, case):
    text, fragments = BAD_CONTRACTS[case]
    path = write_contract(tmp_path, text)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0-beta", "one", "1.0.0.0"])
def test_version_must_be_semver(tmp_path, version):
    path = write_contract(tmp_path, MINIMAL["sft"].replace("version: 1.0.0", f"version: '{version}'"))
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert f"{path}:{_line_of(path, 'version')}: version:" in str(err.value)
    assert "1.0.0" in str(err.value)


def test_a_bad_regex_names_its_line(tmp_path):
    path = write_contract(tmp_path, """\
        kind: preference
        version: 1.0.0
        schema:
          prompt: {type: list<message>}
          chosen: {type: string}
          rejected: {type: string}
        rules:
          patterns:
            - field: chosen
              regex: '[a-z'
        """)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    message = str(err.value)
    assert f"{path}:{_line_of(path, 'regex')}: rules.patterns.0.regex:" in message
    assert "not a valid regular expression" in message


def test_a_pattern_on_a_field_the_kind_lacks(tmp_path):
    text = textwrap.dedent(MINIMAL["sft"]) + "rules:\n  patterns:\n    - {field: reference, regex: x}\n"
    path = write_contract(tmp_path, text)
    with pytest.raises(ContractError, match=r"rules\.patterns\[0\]\.field: 'reference'"):
        load_contract(path)


def test_invalid_yaml_is_a_contract_error(tmp_path):
    path = write_contract(tmp_path, "kind: sft\nschema: {messages: [unclosed\n")
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert str(path) in str(err.value)
    assert "not valid YAML" in str(err.value)


def test_a_missing_file_is_a_contract_error(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert str(path) in str(err.value)
    assert "does not exist" in str(err.value)


@pytest.mark.parametrize("text", ["- kind: sft\n", "just text\n", ""])
def test_a_contract_must_be_a_mapping(tmp_path, text):
    path = write_contract(tmp_path, text)
    with pytest.raises(ContractError, match="a contract is a mapping"):
        load_contract(path)


def test_contracts_are_frozen():
    contract = load_contract(CONTRACTS / "sft.yaml")
    with pytest.raises(ValidationError, match="frozen"):
        contract.version = "9.9.9"
    assert isinstance(contract, Contract) and contract.version == "1.1.0"


# ---------------------------------------------------------------------------------------------
# role order
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sequence", "accepted"), [
    ("user,assistant,", True),
    ("system,user,assistant,", True),
    ("system,user,assistant,user,assistant,", True),
    ("user,assistant,user,assistant,user,assistant,", True),
    ("assistant,user,", False),
    ("system,", False),
    ("", False),
    ("user,assistant,user,", False),
    ("system,system,user,assistant,", False),
    ("user,user,assistant,", False),
    ("user,assistant", False),  # every role ends with a comma
    ("user,assistant,system,", False),
])
def test_role_order_for_the_sft_contract(sequence, accepted):
    regex = role_order_regex("system? (user assistant)+")
    assert bool(re.match(regex, sequence)) is accepted


def test_role_order_quantifiers():
    assert re.match(role_order_regex("user assistant*"), "user,")
    assert re.match(role_order_regex("user assistant*"), "user,assistant,assistant,")
    assert not re.match(role_order_regex("user assistant+"), "user,")
    assert re.match(role_order_regex("(user assistant)*"), "")
    assert re.match(role_order_regex("  system   user  "), "system,user,")
    assert not re.match(role_order_regex("user"), "username,")


@pytest.mark.parametrize(("pattern", "message"), [
    ("user bot", "unknown role 'bot'"),
    ("human assistant", "unknown role 'human'"),
    ("User assistant", "cannot read"),
    ("user, assistant", "cannot read"),
    ("user [assistant]", "cannot read"),
    ("(user assistant", "cannot read"),
    ("user assistant)", "cannot read"),
    ("user ?", "cannot read"),
])
def test_role_order_errors(pattern, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        role_order_regex(pattern)
