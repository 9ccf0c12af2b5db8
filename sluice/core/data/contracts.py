"""Data contracts: one versioned YAML file per dataset kind, compiled to
checks that Great Expectations runs (``sluice/validation.py``).

A contract says, in words a data owner can read:

- ``schema``: the columns, their types, which are required;
- ``rules``: what every row must satisfy (role order, non-empty turns,
  length in tokens, allowed sources, patterns, no overlap with other splits);
- ``dataset``: what the batch as a whole must satisfy (row count, duplicate
  rate, PII rate after redaction);
- ``on_failure``: ``fail`` the whole batch, or ``quarantine`` invalid rows and
  publish the rest while the invalid fraction stays under a bound.

Unknown keys are errors that name the file, the line and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sluice.core.config.yaml_lines import load_yaml_with_lines
from sluice.core.data.kinds import CANONICAL, KINDS, ROLES
from sluice.core.errors import USAGE, ExplainedError

# the contract vocabulary for each canonical column type
TYPE_NAMES = {"string": "string", "int64": "integer", "list<item: string>": "list<string>",
              "list<item: struct<role: string, content: string>>": "list<message>"}
TEXT_FIELDS = {"sft": ("messages",), "eval": ("question", "contexts", "reference"),
               "preference": ("prompt", "chosen", "rejected")}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    type: str = Field(description="string, integer, list<string> or list<message>")
    required: bool = Field(False, description="A row without this value is invalid.")
    description: str = ""


class TokenBounds(_Strict):
    min: int = Field(1, ge=0)
    max: int = Field(4096, ge=1)


class PatternRule(_Strict):
    field: str = Field(description="A text column of the kind (e.g. reference, prompt).")
    regex: str = Field(description="A Python regular expression.")
    must: Literal["match", "not_match"] = "match"
    description: str = ""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RowRules(_Strict):
    """Rules every row must satisfy."""

    role_order: str | None = Field(
        None,
        description="sft: the order of chat roles, e.g. 'system? (user assistant)+' "
        "(roles separated by spaces; ? optional, + one or more, * any number, parentheses group)",
    )
    non_empty_turns: bool = Field(False, description="sft: every turn has text.")
    non_empty: list[str] = Field(default_factory=list, description="eval/preference: text fields that may not be "
                                                                   "empty.")
    min_contexts: int | None = Field(None, ge=0, description="eval: at least this many context passages.")
    chosen_differs_from_rejected: bool = Field(False, description="preference: chosen and rejected differ.")
    tokens: TokenBounds | None = Field(None, description="Bounds on the row's length in tokens (all text).")
    allowed_sources: list[str] | None = Field(None, description="The row's `source` must be one of these.")
    patterns: list[PatternRule] = Field(default_factory=list)
    no_overlap_with: list[Literal["sft", "eval", "preference"]] = Field(
        default_factory=list,
        description="No row's prompt/question text may equal one in these kinds' published data (keeps eval "
        "data out of training and training data out of eval).",
    )


class DatasetRules(_Strict):
    """Rules the published batch as a whole must satisfy."""

    rows: TokenBounds | None = Field(None, description="Bounds on the number of published rows (min/max).")
    max_duplicate_rate: float | None = Field(
        None, ge=0, le=1, description="Duplicates (exact and near) removed by cleaning, as a share of rows read."
    )
    max_pii_rate: float | None = Field(
        None, ge=0, le=1, description="Share of published rows in which PII is still found after redaction."
    )


class OnFailure(_Strict):
    action: Literal["fail", "quarantine"] = Field(
        "fail", description="fail: any invalid row rejects the batch. quarantine: invalid rows are set aside."
    )
    max_invalid_fraction: float = Field(
        0.0, ge=0, le=1, description="quarantine: reject the batch if more than this share of rows is invalid."
    )


class Contract(_Strict):
    kind: Literal["sft", "eval", "preference"]
    version: str = Field(description="Semantic version of this contract; recorded with every batch it checks.")
    description: str = ""
    owner: str = ""
    schema_: dict[str, ColumnSpec] = Field(alias="schema")
    rules: RowRules = Field(default_factory=RowRules)  # type: ignore[arg-type]
    dataset: DatasetRules = Field(default_factory=DatasetRules)  # type: ignore[arg-type]
    on_failure: OnFailure = Field(default_factory=OnFailure)  # type: ignore[arg-type]

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not re.fullmatch(r"\d+\.\d+\.\d+", value):
            raise ValueError(f"{value!r} is not a version like 1.0.0")
        return value

    @model_validator(mode="after")
    def _fits_the_kind(self) -> Contract:
        """The contract describes the kind's canonical schema, and each rule
        applies to this kind."""
        problems = []
        canonical = {f.name: TYPE_NAMES.get(str(f.type), str(f.type)) for f in CANONICAL[self.kind]}
        for name, column in self.schema_.items():
            if name not in canonical:
                problems.append(f"schema.{name}: not a column of {self.kind} data "
                                f"(columns: {', '.join(sorted(canonical))})")
            elif column.type != canonical[name]:
                problems.append(f"schema.{name}.type: {column.type!r}, but {self.kind} data has {canonical[name]!r}")
        for name in TEXT_FIELDS[self.kind]:
            if name not in self.schema_:
                problems.append(f"schema: column {name!r} of {self.kind} data is not described")
        rules = self.rules
        if self.kind != "sft" and (rules.role_order or rules.non_empty_turns):
            problems.append("rules.role_order / rules.non_empty_turns: only for sft data")
        if rules.role_order:
            try:
                role_order_regex(rules.role_order)
            except ValueError as exc:
                problems.append(f"rules.role_order: {exc}")
        text_fields = set(TEXT_FIELDS[self.kind]) - {"messages", "contexts"}
        for name in rules.non_empty:
            if name not in text_fields:
                problems.append(f"rules.non_empty: {name!r} is not a text field of {self.kind} data "
                                f"({', '.join(sorted(text_fields))})")
        for index, pattern in enumerate(rules.patterns):
            if pattern.field not in text_fields | {"source"}:
                problems.append(f"rules.patterns[{index}].field: {pattern.field!r} is not a text field of "
                                f"{self.kind} data")
        if rules.min_contexts is not None and self.kind != "eval":
            problems.append("rules.min_contexts: only for eval data")
        if rules.chosen_differs_from_rejected and self.kind != "preference":
            problems.append("rules.chosen_differs_from_rejected: only for preference data")
        if self.kind in rules.no_overlap_with:
            problems.append("rules.no_overlap_with: a kind cannot exclude itself (duplicates are removed by cleaning)")
        if rules.tokens and rules.tokens.min > rules.tokens.max:
            problems.append("rules.tokens: min is greater than max")
        if self.on_failure.action == "fail" and self.on_failure.max_invalid_fraction:
            problems.append("on_failure.max_invalid_fraction: only used with action: quarantine")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ContractError(ExplainedError, ValueError):
    """A contract file that cannot be used; names the file, line and key."""

    exit_code = USAGE  # the file is fixed before the command can run


def role_order_regex(pattern: str) -> str:
    """``system? (user assistant)+`` → a regex over comma-joined roles
    (``system,user,assistant``)."""
    tokens = re.findall(r"\(|\)[?+*]?|[a-z_]+[?+*]?", pattern)
    if "".join(tokens) != re.sub(r"\s+", "", pattern):
        raise ValueError(f"cannot read {pattern!r}: use role names, parentheses, ?, + and * separated by spaces")
    parts = []
    for token in tokens:
        if token == "(":
            parts.append("(?:")
            continue
        name, quantifier = token.rstrip("?+*"), token[len(token.rstrip("?+*")):]
        if name == ")":
            parts.append(")" + quantifier)
        elif name in ROLES:
            parts.append(f"(?:{name},){quantifier}")
        else:
            raise ValueError(f"unknown role {name!r} (roles: {', '.join(ROLES)})")
    regex = "^" + "".join(parts) + "$"
    try:
        re.compile(regex)
    except re.error as exc:
        raise ValueError(f"cannot read {pattern!r}: {exc}") from None
    return regex


def load_contract(path: Path) -> Contract:
    """Load and check one contract file; every problem names file and line."""
    try:
        data, origins = load_yaml_with_lines(path)
    except FileNotFoundError:
        raise ContractError(f"{path}: contract file does not exist") from None
    except Exception as exc:  # a YAML syntax error: report it as a contract problem with its location
        raise ContractError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}: a contract is a mapping (kind, version, schema, rules, dataset, on_failure)")
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(str(part) for part in error["loc"])
            where = next((origins[loc[:end]] for end in range(len(loc), 0, -1) if loc[:end] in origins), str(path))
            key = ".".join(loc) or "(top level)"
            if error["type"] == "extra_forbidden":
                problems.append(f"{where}: {key}: unknown key (not part of the contract language)")
            else:
                problems.append(f"{where}: {key}: {error['msg'].removeprefix('Value error, ')}")
        raise ContractError(f"invalid contract {path}:\n" + "\n".join(f"  - {p}" for p in problems)) from None


def contract_path(directory: Path, kind: str) -> Path:
    if kind not in KINDS:
        raise ContractError(f"unknown dataset kind {kind!r}: expected one of {', '.join(KINDS)}")
    return directory / f"{kind}.yaml"


@dataclass(frozen=True)
class Check:
    """One check a contract asks for, before it becomes a GX expectation."""

    rule: str  # the contract key it comes from, e.g. "rules.role_order"
    description: str  # said to people: in reports, Data Docs and quarantine reasons
    expectation: str  # the GX expectation class name
    kwargs: tuple[tuple[str, object], ...]
    level: Literal["row", "dataset"]


def compile_checks(contract: Contract) -> list[Check]:
    """The checks a contract asks for, in a stable order. Row checks run on
    the per-row validation frame, dataset checks on the one-row summary."""
    checks: list[Check] = []

    def row(rule: str, description: str, expectation: str, **kwargs: object) -> None:
        checks.append(Check(rule, description, expectation, tuple(sorted(kwargs.items())), "row"))

    def dataset(rule: str, description: str, column: str, low: float | None, high: float | None) -> None:
        # max of a one-row summary: GX reports the observed value whether or not it passes
        checks.append(Check(rule, description, "ExpectColumnMaxToBeBetween",
                            (("column", column), ("max_value", high), ("min_value", low)), "dataset"))

    for name, column in contract.schema_.items():
        if column.required:
            row(f"schema.{name}.required", f"{name} is present", "ExpectColumnValuesToBeInSet",
                column=f"has_{name}", value_set=[True])
    row("schema.types", "every field has its declared type", "ExpectColumnValuesToBeInSet",
        column="types_ok", value_set=[True])
    rules = contract.rules
    if rules.role_order:
        row("rules.role_order", f"chat roles follow '{rules.role_order}'", "ExpectColumnValuesToMatchRegex",
            column="role_sequence", regex=role_order_regex(rules.role_order))
    if rules.non_empty_turns:
        row("rules.non_empty_turns", "every turn has text", "ExpectColumnValuesToBeBetween",
            column="min_turn_chars", min_value=1)
    for name in rules.non_empty:
        row(f"rules.non_empty.{name}", f"{name} is not empty", "ExpectColumnValuesToBeBetween",
            column=f"{name}_chars", min_value=1)
    if rules.min_contexts is not None:
        row("rules.min_contexts", f"at least {rules.min_contexts} context passage(s)",
            "ExpectColumnValuesToBeBetween", column="n_contexts", min_value=rules.min_contexts)
    if rules.chosen_differs_from_rejected:
        row("rules.chosen_differs_from_rejected", "chosen and rejected differ", "ExpectColumnValuesToBeInSet",
            column="chosen_differs", value_set=[True])
    if rules.tokens:
        row("rules.tokens", f"{rules.tokens.min}–{rules.tokens.max} tokens", "ExpectColumnValuesToBeBetween",
            column="n_tokens", min_value=rules.tokens.min, max_value=rules.tokens.max)
    if rules.allowed_sources is not None:
        row("rules.allowed_sources", f"source is one of {', '.join(rules.allowed_sources)}",
            "ExpectColumnValuesToBeInSet", column="source", value_set=list(rules.allowed_sources))
    for index, pattern in enumerate(rules.patterns):
        expectation = "ExpectColumnValuesToMatchRegex" if pattern.must == "match" else \
            "ExpectColumnValuesToNotMatchRegex"
        row(f"rules.patterns[{index}]",
            pattern.description or f"{pattern.field} {'matches' if pattern.must == 'match' else 'avoids'} "
                                   f"/{pattern.regex}/",
            expectation, column=f"text_{pattern.field}", regex=pattern.regex)
    if rules.no_overlap_with:
        row("rules.no_overlap_with", f"not already in published {', '.join(rules.no_overlap_with)} data",
            "ExpectColumnValuesToBeInSet", column="overlaps", value_set=[False])

    limits = contract.dataset
    if limits.rows:
        dataset("dataset.rows", f"{limits.rows.min}–{limits.rows.max} rows published", "rows_published",
                limits.rows.min, limits.rows.max)
    if limits.max_duplicate_rate is not None:
        dataset("dataset.max_duplicate_rate", f"at most {limits.max_duplicate_rate:.1%} duplicates",
                "duplicate_rate", None, limits.max_duplicate_rate)
    if limits.max_pii_rate is not None:
        dataset("dataset.max_pii_rate", f"at most {limits.max_pii_rate:.1%} of rows with PII after redaction",
                "pii_rate", None, limits.max_pii_rate)
    return checks
