"""The layer rules (pyproject.toml, [tool.importlinter]) hold, and each one
fails when broken: an import planted in a copy of the code trips the
contract it breaks, naming the import. `make test` runs `lint-imports` on
the real tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and pyproject.toml, as they are, in a folder of their own."""
    root = tmp_path_factory.mktemp("architecture")
    for package in ("sluice", "flows", "tasks"):
        shutil.copytree(REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def lint_imports(root: Path) -> tuple[int, str]:
    """Exit status and report (without colours) of lint-imports on the code under ``root``."""
    # the copy comes first on the path, before the editable install of the real tree
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                            timeout=240)
    return result.returncode, re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)


def test_the_unchanged_copy_keeps_every_contract(code_copy: Path) -> None:
    status, report = lint_imports(code_copy)
    assert status == 0, report
    assert "4 kept, 0 broken" in report


PLANTED = [
    ("sluice/core/lineage.py", "import prefect", "The core runs without Prefect", "sluice.core.lineage -> prefect"),
    ("sluice/core/pipeline.py", "import flows.train", "The shell on top, then flows",
     "sluice.core.pipeline -> flows.train"),
    ("tasks/ingest.py", "import flows.ingest", "The shell on top, then flows", "tasks.ingest -> flows.ingest"),
    ("sluice/serving/state.py", "import sluice.shell.stack", "The shell on top, then flows",
     "sluice.serving.state -> sluice.shell.stack"),
    ("sluice/core/data/kinds.py", "import sluice.core.training.job", "Inside the core, stages import only",
     "sluice.core.data.kinds -> sluice.core.training.job"),
    ("sluice/lakefs_server/names.py", "import sluice.core.config", "The embedded lakeFS server imports nothing",
     "sluice.lakefs_server.names -> sluice.core.config"),
]


@pytest.mark.parametrize(("module", "statement", "contract", "chain"), PLANTED,
                         ids=[f"{m.split('/')[-1]}:{s}" for m, s, _, _ in PLANTED])
def test_a_planted_import_breaks_its_contract(code_copy: Path, tmp_path: Path, module: str, statement: str,
                                              contract: str, chain: str) -> None:
    root = tmp_path / "code"
    shutil.copytree(code_copy, root)
    target = root / module
    target.write_text(target.read_text() + f"\n{statement}  # planted by the test\n")
    status, report = lint_imports(root)
    assert status != 0, report
    broken = report.split("Broken contracts", 1)[-1]
    assert contract in broken and chain in broken, report
