"""Mutation testing of the decision code, scope by scope, with mutmut.

    .venv/bin/python tools/mutation.py                 # every scope (what `make mutation` runs)
    .venv/bin/python tools/mutation.py gate ledger     # some scopes
    .venv/bin/python tools/mutation.py --report gate   # the table of the last run, without running

A scope is a few source files (optionally only some of their functions) and the fast tests
that exercise them. Each scope runs in a folder of its own, ``.mutation/<scope>/``: a snapshot
of the tree whose pyproject.toml has the base ``[tool.mutmut]`` settings of the real one plus
the scope's files and tests. mutmut copies that snapshot into ``mutants/`` there, so the real
tree is never mutated and other work on it is not disturbed. mutmut runs, per mutant, only the
tests that reached the mutated function in its first (stats) run.

Only code that runs inside the test process is measured: the SDK tests of the embedded lakeFS
server start it as a subprocess, so the lakeFS scope uses the tests that drive its store
directly. Results and the equivalent mutants are recorded in QUALITY.md.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK_ROOT = REPO_ROOT / ".mutation"
# what a scope's tests may read besides the packages: contracts, demo data, YAML files
SNAPSHOT = ("sluice", "flows", "tasks", "tests", "data_contracts", "demo", "prefect.yaml", "deployments")


@dataclass(frozen=True)
class Scope:
    files: tuple[str, ...]
    tests: tuple[str, ...]
    # mutmut mutant-name globs (module.x_function__mutmut_N); empty: every function of the files
    functions: tuple[str, ...] = ()
    # more pytest arguments for this scope's runs (e.g. -k to leave out tests too slow per mutant)
    pytest_args: tuple[str, ...] = ()


SCOPES: dict[str, Scope] = {
    "gate": Scope(
        files=("sluice/core/promotion/gate.py",),
        tests=("tests/unit/test_promotion.py", "tests/unit/test_gate_mutants.py"),
    ),
    "ledger": Scope(
        files=("sluice/shell/bridge_ledger.py",),
        tests=("tests/unit/test_bridge_ledger.py",),
    ),
    "serving-auth": Scope(
        files=("sluice/serving/server.py", "sluice/serving/routes.py"),
        tests=("tests/serving/test_auth_mutants.py",),
        # routes.py: only the key check; the routes themselves are not decision code
        functions=("sluice.serving.server.*", "sluice.serving.routes.x_authorize__mutmut_*"),
    ),
    "lakefs-merge": Scope(
        files=("sluice/lakefs_server/metadata/merging.py", "sluice/lakefs_server/metadata/trees.py",
               "sluice/lakefs_server/metadata/store.py"),
        tests=("tests/unit/test_lakefs_server_parts.py", "tests/lakefs/test_store_semantics.py",
               "tests/lakefs/test_store_listing.py"),
        # store.py: commit, merge, delete and reset; not repositories, tags or action runs
        functions=("sluice.lakefs_server.metadata.merging.*", "sluice.lakefs_server.metadata.trees.*",
                   *(f"sluice.lakefs_server.metadata.store.xǁMetadataStoreǁ{name}__mutmut_*" for name in (
                       "delete_objects", "prepare_commit", "apply_commit", "diff_uncommitted", "is_dirty",
                       "prepare_merge", "apply_merge", "reset_branch", "discard_prepared"))),
    ),
    "metrics": Scope(
        files=("sluice/core/evaluation/metrics/bootstrap.py", "sluice/core/evaluation/metrics/text.py"),
        tests=("tests/unit/test_metrics.py", "tests/unit/test_evaluation_parts.py",
               "tests/unit/test_metrics_mutants.py"),
        # the two tests that load MiniLM would load it again in every mutant's process (~15 s each):
        # test_metrics_mutants.py checks the semantic-similarity arithmetic with a small embedder instead
        pytest_args=("-k", "not test_identical_strings_score_one_and_disjoint_strings_low and "
                           "not test_batched_semantic_similarity_equals_ragas_semantic_similarity"),
    ),
    "dedup": Scope(
        files=("sluice/core/data/cleaning/dedup.py", "sluice/core/data/cleaning/minhash.py"),
        tests=("tests/unit/test_cleaning.py", "tests/unit/test_prepare_batch.py", "tests/unit/test_dedup_mutants.py",
               "tests/unit/test_dedup_thresholds.py", "tests/unit/test_minhash_mutants.py"),
    ),
    "validation": Scope(
        files=("sluice/core/data/validation.py", "sluice/core/data/contracts.py"),
        tests=("tests/unit/test_validation.py", "tests/unit/test_contracts.py", "tests/unit/test_formats.py",
               "tests/unit/test_yaml_files.py", "tests/unit/test_validation_mutants.py",
               "tests/unit/test_contract_mutants.py"),
        # validation.py: the verdict and how rule outcomes are read; not the Great Expectations
        # plumbing (context, suite runs, data docs), whose mutants each need a whole GX run
        functions=("sluice.core.data.contracts.*",
                   *(f"sluice.core.data.validation.x_{name}__mutmut_*" for name in (
                       "decide_batch", "_outcomes", "_error", "_plain", "_expectation"))),
        # that test lists the repository's files with git, and the snapshot is not a git checkout
        pytest_args=("-k", "not test_the_repository_has_yaml_files_to_check"),
    ),
}


def prepare(scope_name: str, scope: Scope) -> Path:
    """``.mutation/<scope>/``: a fresh snapshot of the tree and the scope's mutmut settings."""
    work = WORK_ROOT / scope_name
    work.mkdir(parents=True, exist_ok=True)
    for name in SNAPSHOT:
        source, target = REPO_ROOT / name, work / name
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            shutil.copy2(source, target)
    # every run starts from scratch: mutmut would keep earlier verdicts (and its copy of the sources)
    # in mutants/, and a verdict reached with other tests or other code is not a measurement of these
    shutil.rmtree(work / "mutants", ignore_errors=True)
    (work / "pyproject.toml").write_text(_pyproject_for(scope), encoding="utf-8")
    return work


def _pyproject_for(scope: Scope) -> str:
    """The real pyproject.toml, its [tool.mutmut] replaced by the base settings plus this scope."""
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    base = tomllib.loads(text)["tool"]["mutmut"]
    settings = {**base, "only_mutate": list(scope.files),
                "pytest_add_cli_args": [*base.get("pytest_add_cli_args", []), *scope.pytest_args],
                "pytest_add_cli_args_test_selection": [t for t in scope.tests if (REPO_ROOT / t).exists()]}
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line.strip() == "[tool.mutmut]"
        if not skipping:
            kept.append(line)
    body = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    return "\n".join(kept) + "\n\n[tool.mutmut]\n" + body + "\n"


def run(scope_name: str, scope: Scope, max_children: int) -> int:
    work = prepare(scope_name, scope)
    command = [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(max_children),
               *scope.functions]
    log = work / "mutmut.log"
    print(f"== {scope_name}: mutmut {' '.join(command[1:])}  (in {work.relative_to(REPO_ROOT)}, log: "
          f"{log.relative_to(REPO_ROOT)})", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.run(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    print(f"   {'done' if code == 0 else f'mutmut exited {code}'} in {time.monotonic() - started:.0f} s", flush=True)
    return code


def results(scope_name: str, scope: Scope) -> dict[str, dict[str, str]]:
    """{file: {mutant name: status}} from mutmut's .meta files of the scope's last run."""
    from mutmut.stats import status_by_exit_code

    found: dict[str, dict[str, str]] = {}
    for file in scope.files:
        meta = WORK_ROOT / scope_name / "mutants" / (file + ".meta")
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        found[file] = {name: status_by_exit_code[code] for name, code in codes.items()
                       if not scope.functions or any(fnmatch.fnmatchcase(name, g) for g in scope.functions)}
    return found


def table(rows: dict[str, dict[str, dict[str, str]]]) -> str:
    """Markdown: per file, mutants, killed, survived, timeout, no tests, not checked, score."""
    lines = ["| scope | module | mutants | killed | survived | timeout | no tests | not run | score |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for scope_name, files in rows.items():
        for file, statuses in files.items():
            count = {status: sum(1 for s in statuses.values() if s == status)
                     for status in ("killed", "survived", "timeout", "segfault", "no tests", "not checked")}
            # a timeout or a crash is a detected mutant (the tests did not pass): both count as killed here;
            # "no tests" counts as survived
            count["killed"] += count.pop("segfault")
            checked = count["killed"] + count["survived"] + count["timeout"] + count["no tests"]
            score = 100.0 * (count["killed"] + count["timeout"]) / checked if checked else 0.0
            partial = " (partial)" if count["not checked"] else ""
            lines.append(f"| {scope_name} | `{file}` | {len(statuses)} | {count['killed']} | {count['survived']} | "
                         f"{count['timeout']} | {count['no tests']} | {count['not checked']} | {score:.1f}%{partial} |")
    return "\n".join(lines)


def survivors(rows: dict[str, dict[str, dict[str, str]]]) -> list[str]:
    return sorted(name for files in rows.values() for statuses in files.values()
                  for name, status in statuses.items() if status in ("survived", "no tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scopes", nargs="*", help=f"default: all of {', '.join(SCOPES)}")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant workers (default 1)")
    parser.add_argument("--report", action="store_true", help="print the last run's table without running")
    parser.add_argument("--tests", nargs="+", metavar="PATH",
                        help="run with these test files instead of the scope's own (e.g. to measure a baseline)")
    args = parser.parse_args()
    unknown = [name for name in args.scopes if name not in SCOPES]
    if unknown:
        parser.error(f"unknown scope {', '.join(unknown)}: choose from {', '.join(SCOPES)}")
    chosen = args.scopes or list(SCOPES)
    failed = []
    if not args.report:
        for name in chosen:
            scope = replace(SCOPES[name], tests=tuple(args.tests)) if args.tests else SCOPES[name]
            if run(name, scope, args.max_children) != 0:
                failed.append(name)
    rows = {name: results(name, SCOPES[name]) for name in chosen}
    print(table(rows))
    left = survivors(rows)
    if left:
        print("\nsurviving (see `cd .mutation/<scope> && ../../.venv/bin/mutmut show <name>`):")
        print("\n".join(f"  {name}" for name in left))
    if failed:
        print(f"\nmutmut failed for: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
