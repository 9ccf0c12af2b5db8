"""Contracts and validation, pinned where mutation testing (tools/mutation.py, scope
"validation") found them unchecked: the messages that name what is allowed, how an error that
Great Expectations caught inside a rule is read, and how observed values become plain JSON."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sluice.core.data.contracts import ContractError, contract_path, role_order_regex
from sluice.core.data.validation import _error, _plain


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
