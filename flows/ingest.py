"""Write–audit–publish: new data reaches ``main`` only if its contract holds.

1. Branch ``ingest-<kind>-<batch>`` from ``main``, pinned to its commit id
   (lakeFS branch names cannot contain ``/``).
2. Write the raw input as received, the cleaned rows and a manifest to the
   branch, and commit with the flow run's lineage.
3. Validate the cleaned rows against the kind's contract (``<kind>.yaml`` in
   ``contracts.directory``, ``data_contracts/`` by default) with Great
   Expectations.
4. Commit the validation report and Data Docs (and any quarantined rows)
   beside the data. Pass → merge into ``main``. Fail → ``main`` untouched, the
   branch kept for inspection, and the flow fails saying which rules broke,
   how many rows, and where to look.
"""

from __future__ import annotations

from typing import NoReturn

from prefect import flow, get_run_logger

from sluice.core.config import SluiceConfig
from sluice.core.data.audit import ValidatedBatch
from sluice.core.data.batch import Batch, IngestRejected, IngestResult, audit_destinations, raw_destinations
from sluice.core.data.contracts import Contract
from sluice.core.data.kinds import DatasetKind
from sluice.core.data.prepare import PreparedBatch
from sluice.core.data.readers import InputError, SourceFile
from sluice.core.data.reports import rejection_message
from sluice.core.lake.records import CommitRef
from tasks import current_flow_run
from tasks.ingest import find_source_files, load_kind_contract, prepare, remove_work_dir, validate
from tasks.lakefs import (
    commit_branch,
    create_branch,
    delete_branch,
    ensure_repository,
    merge_branch,
    read_published_values,
    resolve_commit,
    upload_files,
)
from tasks.reports import report_ingest


@flow(name="ingest", log_prints=True)
def ingest(
    source: str,
    kind: DatasetKind,
    source_name: str | None = None,
    config: SluiceConfig = SluiceConfig(),  # noqa: B008 (a form default)
) -> IngestResult:
    """Ingest ``source`` (a file, folder, saved HF dataset or fsspec URL) as
    ``kind`` data through write–audit–publish."""
    contract = load_kind_contract(kind, config.contracts)
    files = find_source_files(source)
    batch = open_batch(source, kind, source_name, contract, config)

    # Write: the raw input goes up while the batch is prepared, and lands before any commit.
    raw_upload = upload_files.submit(batch.repository, batch.branch, raw_destinations(files, batch.layout))
    published_ids = read_published_values(batch.repository, batch.base.commit_id, config.data.datasets_prefix,
                                          [kind], "id")
    try:
        prepared = prepare(files, kind, config.data.cleaning, str(batch.work / "prepare"), source_name=batch.name,
                           chunk_rows=config.data.chunk_rows, contract=contract, published_ids=published_ids)
    except InputError as unreadable:
        keep_unreadable_input(batch, files, contract, [o.path for o in raw_upload.result()], unreadable)
    raw = [o.path for o in raw_upload.result()]
    if prepared.report.rows_out == 0 and prepared.report.dropped.get("already_published") == prepared.report.rows_in:
        return nothing_new(batch, prepared)
    cleaned_upload = upload_files.submit(batch.repository, batch.branch, {
        batch.layout.clean: prepared.clean_path,
        batch.layout.manifest: batch.write_manifest(files, contract, raw, prepared, None)})

    # Audit (on the local files while they upload; the write commit still comes first).
    overlap_keys = read_published_values(batch.repository, batch.base.commit_id, config.data.datasets_prefix,
                                         contract.rules.no_overlap_with, "overlap_key")
    validated = validate(prepared, contract, overlap_keys, data_docs=config.contracts.data_docs,
                         work_dir=str(batch.work / "validate"))
    cleaned_upload.result()
    commit_branch(batch.repository, batch.branch, f"Write {kind} batch {batch.batch_id} (not yet validated)",
                  batch.lineage)
    audited = commit_audit(batch, files, contract, raw, prepared, validated)

    # Publish, or stop loudly.
    if validated.summary.decision == "reject":
        reject(batch, prepared, validated, audited)
    return publish(batch, prepared, validated, audited)


# ------------------------------------------------------------------ the steps


def open_batch(source: str, kind: str, source_name: str | None, contract: Contract, config: SluiceConfig) -> Batch:
    """Ensure the repository, pin main's commit, branch from it."""
    lake = config.lakefs
    repo = ensure_repository(lake.repository, lake.storage_namespace, lake.default_branch)
    base = resolve_commit(repo.repository, repo.default_branch)
    batch = Batch.open(kind=kind, source=source, source_name=source_name, contract=contract,
                       repository=repo.repository, main=repo.default_branch, base=base,
                       datasets_prefix=config.data.datasets_prefix, work_dir=config.data.work_dir,
                       flow_run=current_flow_run())
    create_branch(batch.repository, batch.branch, base.commit_id)
    return batch


def keep_unreadable_input(batch: Batch, files: list[SourceFile], contract: Contract, raw: list[str],
                          error: InputError) -> NoReturn:
    """Commit the raw input and what was wrong with it on the branch; fail."""
    manifest_path = batch.write_manifest(files, contract, raw, None, None, error=str(error))
    upload_files(batch.repository, batch.branch, {batch.layout.manifest: manifest_path})
    commit = commit_branch(batch.repository, batch.branch, f"Raw {batch.kind} input, unreadable ({batch.batch_id})",
                           batch.verdict("unreadable"))
    message = (f"{error}\nNothing reached {batch.main}. The raw input is kept on branch {batch.branch!r} "
               f"of {batch.repository} ({commit.url}).")
    report_ingest(IngestResult(kind=batch.kind, batch_id=batch.batch_id, decision="unreadable", branch=batch.branch,
                               branch_commit=commit, message=message), None)
    remove_work_dir(str(batch.work))
    raise IngestRejected(message) from None


def nothing_new(batch: Batch, prepared: PreparedBatch) -> IngestResult:
    """Every row is already published: drop the branch, report, done."""
    delete_branch(batch.repository, batch.branch)
    result = IngestResult(kind=batch.kind, batch_id=batch.batch_id, decision="nothing_new", branch=batch.branch,
                          main_commit=batch.base, rows_in=prepared.report.rows_in,
                          message=f"every row is already in {batch.main}: nothing to publish")
    get_run_logger().info(result.message)
    report_ingest(result, None)
    remove_work_dir(str(batch.work))
    return result


def commit_audit(batch: Batch, files: list[SourceFile], contract: Contract, raw: list[str], prepared: PreparedBatch,
                 validated: ValidatedBatch) -> CommitRef:
    """Commit the validation report, Data Docs and any quarantine beside the data."""
    manifest_path = batch.write_manifest(files, contract, raw, prepared, validated)
    upload_files(batch.repository, batch.branch, audit_destinations(batch, validated, manifest_path))
    return commit_branch(batch.repository, batch.branch,
                         f"Validate {batch.kind} batch {batch.batch_id}: {validated.summary.decision}",
                         batch.verdict(validated.summary.decision, prepared, validated))


def reject(batch: Batch, prepared: PreparedBatch, validated: ValidatedBatch, audited: CommitRef) -> NoReturn:
    """main untouched, the branch kept for inspection, the flow fails saying why."""
    result = batch.result(prepared, validated, audited)
    result.message = rejection_message(result, validated.summary, batch.repository, batch.main)
    report_ingest(result, validated.summary)
    remove_work_dir(str(batch.work))
    raise IngestRejected(result.message)


def publish(batch: Batch, prepared: PreparedBatch, validated: ValidatedBatch, audited: CommitRef) -> IngestResult:
    """Merge the audited branch into main, with the verdict as metadata."""
    summary = validated.summary
    result = batch.result(prepared, validated, audited)
    result.main_commit = merge_branch(
        batch.repository, batch.branch, batch.main,
        message=f"Publish {batch.kind} batch {batch.batch_id} ({summary.rows_published} rows)",
        metadata=batch.verdict(summary.decision, prepared, validated))
    delete_branch(batch.repository, batch.branch)
    result.message = (f"published {summary.rows_published} {batch.kind} rows to {batch.main} at "
                      f"{result.main_commit.commit_id}" + (f"; {result.rows_quarantined} quarantined"
                                                           if result.rows_quarantined else ""))
    get_run_logger().info(result.message)
    report_ingest(result, summary)
    remove_work_dir(str(batch.work))
    return result
