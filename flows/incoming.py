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

from flows.ingest import ingest
from sluice.core.config import SluiceConfig
from sluice.core.data.batch import IngestResult
from sluice.core.data.incoming import INCOMING_KINDS, IncomingRejected, incoming_files
from sluice.core.lake.client import require_commit_id
from tasks.lakefs import diff_refs
from tasks.reports import report_incoming


@flow(name="validate-incoming", log_prints=True)
def validate_incoming(branch: str, commit_id: str,
                      config: SluiceConfig = SluiceConfig()) -> list[IngestResult]:  # noqa: B008 (a form default)
    """Ingest each data file that ``commit_id`` (on ``branch``) adds or changes relative to main."""
    repository, main = config.lakefs.repository, config.lakefs.default_branch
    commit_id = require_commit_id(commit_id)
    changes = diff_refs(repository, main, commit_id)
    files, skipped = incoming_files([c.path for c in changes if c.type in ("added", "changed")])
    if skipped:
        get_run_logger().info("not data (top folder is not one of %s): %s", ", ".join(INCOMING_KINDS),
                              ", ".join(skipped))
    states = {f.path: ingest(source=f"lakefs://{repository}/{commit_id}/{f.path}", kind=f.kind,
                             source_name=f"{branch}:{f.path}", config=config, return_state=True) for f in files}
    results = {path: state.result(raise_on_failure=False) for path, state in states.items()}
    outcomes = {path: result if isinstance(result, IngestResult) else str(result) for path, result in results.items()}
    report_incoming(branch, commit_id, outcomes, skipped, INCOMING_KINDS)
    failed = {path: outcome for path, outcome in outcomes.items() if not isinstance(outcome, IngestResult)}
    if failed:
        raise IncomingRejected(f"{len(failed)} of {len(files)} file(s) from {branch}@{commit_id[:12]} did not reach "
                               f"{main}: " + "; ".join(f"{path}: {error}" for path, error in failed.items()))
    return list(results.values())  # type: ignore[arg-type]
