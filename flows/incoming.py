"""Raw data committed on an ``incoming-*`` branch goes through
write–audit–publish (the ingest flow), one file at a time.

The event bridge turns the commit into a ``lakefs.commit.completed`` event,
and the ``validate-incoming`` deployment's trigger runs this flow pinned to
that commit. A file's top folder names its kind (``sft/``, ``eval/``,
``preference/``). Each file is read at the commit (``lakefs://repo/<commit>/…``),
so what is validated is exactly what was committed; the raw files stay on the
incoming branch whatever happens. Valid files reach ``main`` (whose merge
starts the training pipeline); a file that breaks its contract stops at its
ingest branch and this flow fails, naming it.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from flows.ingest import IngestResult, ingest
from sluice.config import SluiceConfig
from sluice.datasets import DatasetKind
from tasks.lakefs import diff_refs, require_commit_id

# eval last: its contract checks that eval rows do not overlap the training data already published
KINDS: tuple[str, ...] = ("sft", "preference", "eval")


class IncomingFile(BaseModel):
    path: str
    kind: DatasetKind


class IncomingRejected(RuntimeError):
    """At least one incoming file did not reach main."""


def incoming_files(changed_paths: list[str]) -> tuple[list[IncomingFile], list[str]]:
    """(files to ingest, paths skipped): the top folder must name a dataset kind."""
    files, skipped = [], []
    for path in sorted(changed_paths):
        top = path.split("/", 1)[0]
        if "/" in path and top in KINDS and not path.startswith("_"):
            files.append(IncomingFile(path=path, kind=top))  # type: ignore[arg-type]
        else:
            skipped.append(path)
    return sorted(files, key=lambda f: (KINDS.index(f.kind), f.path)), skipped


@flow(name="validate-incoming", log_prints=True)
def validate_incoming(branch: str, commit_id: str,
                      config: SluiceConfig = SluiceConfig()) -> list[IngestResult]:  # noqa: B008 (a form default)
    """Ingest each data file that ``commit_id`` (on ``branch``) adds or changes relative to main."""
    repository, main = config.lakefs.repository, config.lakefs.default_branch
    commit_id = require_commit_id(commit_id)
    changes = diff_refs(repository, main, commit_id)
    files, skipped = incoming_files([c.path for c in changes if c.type in ("added", "changed")])
    if skipped:
        get_run_logger().info("not data (top folder is not one of %s): %s", ", ".join(KINDS), ", ".join(skipped))
    states = {f.path: ingest(source=f"lakefs://{repository}/{commit_id}/{f.path}", kind=f.kind,
                             source_name=f"{branch}:{f.path}", config=config, return_state=True) for f in files}
    results = {path: state.result(raise_on_failure=False) for path, state in states.items()}
    create_markdown_artifact(markdown=incoming_report(branch, commit_id, results, skipped), key="incoming")
    failed = {path: result for path, result in results.items() if not isinstance(result, IngestResult)}
    if failed:
        raise IncomingRejected(f"{len(failed)} of {len(files)} file(s) from {branch}@{commit_id[:12]} did not reach "
                               f"{main}: " + "; ".join(f"{path}: {error}" for path, error in failed.items()))
    return list(results.values())  # type: ignore[arg-type]


def incoming_report(branch: str, commit_id: str, results: dict[str, object], skipped: list[str]) -> str:
    lines = [f"# Incoming data: `{branch}` @ `{commit_id[:12]}`", ""]
    for path, result in results.items():
        if isinstance(result, IngestResult):
            lines.append(f"- `{path}` ({result.kind}): {result.decision}, {result.rows_published} rows published")
        else:
            lines.append(f"- `{path}`: **did not reach main** — {result}")
    lines += [f"- `{path}`: skipped (not under {', '.join(KINDS)}/)" for path in skipped]
    if not results:
        lines.append("- no data files in this commit")
    return "\n".join(lines) + "\n"
