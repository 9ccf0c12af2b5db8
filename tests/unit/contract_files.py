"""Contract files written for a test: the one helper the contract and validation tests share."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_contract(tmp_path: Path, text: str, name: str = "contract.yaml") -> Path:
    """``text`` (indented like the test's source; dedented here) as a contract file in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path
