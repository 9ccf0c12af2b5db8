"""Write–audit–publish: new data reaches ``main`` only if its contract holds.

1. Branch ``ingest-<kind>-<batch>`` from ``main``, pinned to its commit id
   (lakeFS branch names cannot contain ``/``).
2. Write the raw input as received, the cleaned rows and a manifest to the
   branch, and commit with the flow run's lineage.
3. Validate the cleaned rows against ``data_contracts/<kind>.yaml`` with
   Great Expectations.
4. Commit the validation report and Data Docs (and any quarantined rows)
   beside the data. Pass → merge into ``main``. Fail → ``main`` untouched, the
   branch kept for inspection, and the flow fails saying which rules broke,
   how many rows, and where to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from sluice.config import SluiceConfig
from sluice.contracts import Contract
from sluice.datasets import DatasetKind, InputError
from sluice.ingest import PreparedBatch
from sluice.validation import ValidationSummary
from tasks.ingest import (
    BatchLayout,
    ValidatedBatch,
    find_source_files,
    folder_files,
    load_kind_contract,
    manifest,
    new_batch_id,
    prepare,
    raw_destinations,
    remove_work_dir,
    validate,
    write_json,
)
from tasks.lakefs import (
    CommitRef,
    commit_branch,
    create_branch,
    delete_branch,
    ensure_repository,
    merge_branch,
    resolve_commit,
    upload_files,
)


class IngestRejected(RuntimeError):
    """The batch did not reach main; the message says why and where to look."""


class IngestResult(BaseModel):
    kind: str
    batch_id: str
    decision: str  # publish | publish_with_quarantine | reject | nothing_new | unreadable
    branch: str
    branch_commit: CommitRef | None = None
    main_commit: CommitRef | None = None  # set when merged
    rows_in: int = 0
    rows_published: int = 0
    rows_quarantined: int = 0
    clean_path: str | None = None  # lakeFS path of the published rows
    message: str = ""


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
    try:
        prepared = prepare(files, kind, config.data.cleaning, str(batch.work / "prepare"), source_name=batch.name,
                           chunk_rows=config.data.chunk_rows, contract=contract, repository=batch.repository,
                           base_commit=batch.base.commit_id, datasets_prefix=config.data.datasets_prefix)
    except InputError as unreadable:
        keep_unreadable_input(batch, files, contract, [o.path for o in raw_upload.result()], unreadable)
    raw = [o.path for o in raw_upload.result()]
    if prepared.report.rows_out == 0 and prepared.report.dropped.get("already_published") == prepared.report.rows_in:
        return nothing_new(batch, prepared)
    cleaned_upload = upload_files.submit(batch.repository, batch.branch, {
        batch.layout.clean: prepared.clean_path,
        batch.layout.manifest: batch.write_manifest(files, contract, raw, prepared, None)})

    # Audit (on the local files while they upload; the write commit still comes first).
    validated = validate(prepared, contract, repository=batch.repository, base_commit=batch.base.commit_id,
                         datasets_prefix=config.data.datasets_prefix, data_docs=config.contracts.data_docs,
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


@dataclass(frozen=True)
class Batch:
    """One ingest run's place in the data lake."""

    kind: str
    name: str  # source name for rows without one
    source: str
    repository: str
    main: str
    base: CommitRef  # main when the batch began: everything is pinned to it
    batch_id: str
    branch: str
    layout: BatchLayout
    lineage: dict[str, str]  # commit metadata linking the Prefect flow run
    work: Path

    def write_manifest(self, files: list, contract: Contract, raw: list[str], prepared: PreparedBatch | None,
                       validated: ValidatedBatch | None, error: str | None = None) -> str:
        return write_json(self.work / "manifest.json", manifest(
            layout=self.layout, source=self.source, source_name=self.name, files=files, raw_paths=raw,
            contract=contract, prepared=prepared, validated=validated, base_commit=self.base.commit_id,
            flow_run={"id": self.lineage["prefect.flow_run_id"]}, error=error))


def open_batch(source: str, kind: str, source_name: str | None, contract: Contract, config: SluiceConfig) -> Batch:
    """Ensure the repository, pin main's commit, branch from it."""
    lake = config.lakefs
    repo = ensure_repository(lake.repository, lake.storage_namespace, lake.default_branch)
    base = resolve_commit(repo.repository, repo.default_branch)
    run_id = str(flow_run.get_id() or "local")
    batch_id = new_batch_id(run_id)
    branch = f"ingest-{kind}-{batch_id}"
    create_branch(repo.repository, branch, base.commit_id)
    lineage = {"prefect.flow_run_id": run_id, "prefect.flow_run_name": str(flow_run.get_name()),
               "sluice.kind": kind, "sluice.batch": batch_id, "sluice.source": source,
               "sluice.contract_version": contract.version, "sluice.base_commit": base.commit_id}
    return Batch(kind=kind, name=source_name or Path(source.rstrip("/").split("://", 1)[-1]).stem or kind,
                 source=source, repository=repo.repository, main=repo.default_branch, base=base, batch_id=batch_id,
                 branch=branch, layout=BatchLayout.of(config.data.datasets_prefix, kind, batch_id), lineage=lineage,
                 work=config.data.work_dir / batch_id)


def keep_unreadable_input(batch: Batch, files: list, contract: Contract, raw: list[str], error: InputError) -> NoReturn:
    """Commit the raw input and what was wrong with it on the branch; fail."""
    manifest_path = batch.write_manifest(files, contract, raw, None, None, error=str(error))
    upload_files(batch.repository, batch.branch, {batch.layout.manifest: manifest_path})
    commit = commit_branch(batch.repository, batch.branch, f"Raw {batch.kind} input, unreadable ({batch.batch_id})",
                           {**batch.lineage, "sluice.decision": "unreadable"})
    message = (f"{error}\nNothing reached {batch.main}. The raw input is kept on branch {batch.branch!r} "
               f"of {batch.repository} ({commit.url}).")
    _report(IngestResult(kind=batch.kind, batch_id=batch.batch_id, decision="unreadable", branch=batch.branch,
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
    _report(result, None)
    remove_work_dir(str(batch.work))
    return result


def commit_audit(batch: Batch, files: list, contract: Contract, raw: list[str], prepared: PreparedBatch,
                 validated: ValidatedBatch) -> CommitRef:
    """Commit the validation report, Data Docs and any quarantine beside the data."""
    summary = validated.summary
    staged = {batch.layout.manifest: batch.write_manifest(files, contract, raw, prepared, validated),
              **folder_files(Path(validated.reports_dir), batch.layout.reports)}
    if validated.quarantine_path:  # the published file changed: invalid rows moved to quarantine
        staged[batch.layout.clean] = validated.publish_path
        staged[batch.layout.quarantine] = validated.quarantine_path
    upload_files(batch.repository, batch.branch, staged)
    return commit_branch(batch.repository, batch.branch,
                         f"Validate {batch.kind} batch {batch.batch_id}: {summary.decision}",
                         _verdict(batch, prepared, summary))


def _verdict(batch: Batch, prepared: PreparedBatch, summary: ValidationSummary) -> dict[str, str]:
    return {**batch.lineage, "sluice.decision": summary.decision, "sluice.rows_in": str(prepared.report.rows_in),
            "sluice.rows_published": str(summary.rows_published),
            "sluice.rows_quarantined": str(summary.rows_invalid if summary.decision != "reject" else 0)}


def _result(batch: Batch, prepared: PreparedBatch, validated: ValidatedBatch, audited: CommitRef) -> IngestResult:
    summary = validated.summary
    return IngestResult(
        kind=batch.kind, batch_id=batch.batch_id, decision=summary.decision, branch=batch.branch,
        branch_commit=audited, rows_in=prepared.report.rows_in, rows_published=summary.rows_published,
        rows_quarantined=summary.rows_invalid if summary.decision == "publish_with_quarantine" else 0,
        clean_path=batch.layout.clean,
    )


def reject(batch: Batch, prepared: PreparedBatch, validated: ValidatedBatch, audited: CommitRef) -> NoReturn:
    """main untouched, the branch kept for inspection, the flow fails saying why."""
    result = _result(batch, prepared, validated, audited)
    result.message = _rejection_message(result, validated, batch.repository, batch.main)
    _report(result, validated)
    remove_work_dir(str(batch.work))
    raise IngestRejected(result.message)


def publish(batch: Batch, prepared: PreparedBatch, validated: ValidatedBatch, audited: CommitRef) -> IngestResult:
    """Merge the audited branch into main, with the verdict as metadata."""
    summary = validated.summary
    result = _result(batch, prepared, validated, audited)
    result.main_commit = merge_branch(
        batch.repository, batch.branch, batch.main,
        message=f"Publish {batch.kind} batch {batch.batch_id} ({summary.rows_published} rows)",
        metadata=_verdict(batch, prepared, summary))
    delete_branch(batch.repository, batch.branch)
    result.message = (f"published {summary.rows_published} {batch.kind} rows to {batch.main} at "
                      f"{result.main_commit.commit_id}" + (f"; {result.rows_quarantined} quarantined"
                                                           if result.rows_quarantined else ""))
    get_run_logger().info(result.message)
    _report(result, validated)
    remove_work_dir(str(batch.work))
    return result


def _rejection_message(result: IngestResult, validated: ValidatedBatch, repository: str, main: str) -> str:
    summary = validated.summary
    failed = [f"  - {o.rule}: {o.description} — "
              + (f"{o.unexpected_count} row(s)" if o.level == "row" else f"observed {o.observed}")
              + (f" (check error: {o.error})" if o.error else "") for o in summary.failed_rules]
    url = result.branch_commit.url if result.branch_commit else ""
    return (f"{result.kind} batch {result.batch_id} rejected by its contract (v{summary.contract_version}): "
            f"{'; '.join(summary.reasons)}\nFailed rules:\n" + "\n".join(failed) +
            f"\n{main} is untouched. Inspect branch {result.branch!r} of {repository} ({url}): raw input, "
            "cleaned rows, quarantine, validation report and Data Docs.")


def _report(result: IngestResult, validated: ValidatedBatch | None) -> None:
    """The run's markdown artifact: counts, contract result, links, top failures."""
    lines = [f"# Ingest {result.kind} batch `{result.batch_id}`: **{result.decision}**", "", result.message or "", ""]
    lines += [f"- rows read: {result.rows_in}; published: {result.rows_published}; "
              f"quarantined: {result.rows_quarantined}"]
    if result.branch_commit:
        lines.append(f"- branch `{result.branch}` at [`{result.branch_commit.commit_id[:12]}`]"
                     f"({result.branch_commit.url})")
    if result.main_commit:
        lines.append(f"- main at [`{result.main_commit.commit_id[:12]}`]({result.main_commit.url})")
    if validated:
        summary = validated.summary
        lines += ["", f"Contract v{summary.contract_version}: {summary.rows_invalid} of {summary.rows_checked} rows "
                      f"invalid ({summary.invalid_fraction:.2%})", ""]
        failed = sorted(summary.failed_rules, key=lambda o: -o.unexpected_count)[:10]
        if failed:
            lines += ["| failing rule | rows | observed |", "|---|---|---|"]
            lines += [f"| {o.description} | {o.unexpected_count} | {'' if o.observed is None else o.observed} |"
                      for o in failed]
    create_markdown_artifact(markdown="\n".join(lines), key=f"ingest-{result.kind}",
                             description=f"ingest {result.kind}: {result.decision}")
