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

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from sluice.config import SluiceConfig
from sluice.datasets import DatasetKind, InputError
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
    logger = get_run_logger()
    lake, data = config.lakefs, config.data
    contract = load_kind_contract(kind, config.contracts)
    files = find_source_files(source)
    name = source_name or Path(source.rstrip("/").split("://", 1)[-1]).stem or kind

    repo = ensure_repository(lake.repository, lake.storage_namespace, lake.default_branch)
    base = resolve_commit(repo.repository, repo.default_branch)
    run_id = str(flow_run.get_id() or "local")
    batch_id = new_batch_id(run_id)
    layout = BatchLayout.of(data.datasets_prefix, kind, batch_id)
    branch = f"ingest-{kind}-{batch_id}"
    create_branch(repo.repository, branch, base.commit_id)
    lineage = {"prefect.flow_run_id": run_id, "prefect.flow_run_name": str(flow_run.get_name()),
               "sluice.kind": kind, "sluice.batch": batch_id, "sluice.source": source,
               "sluice.contract_version": contract.version, "sluice.base_commit": base.commit_id}
    work = data.work_dir / batch_id

    # Write: the raw input goes up while the batch is prepared (the upload runs
    # mostly in the lakeFS server), and lands before any commit: nothing is lost.
    raw_upload = upload_files.submit(repo.repository, branch, raw_destinations(files, layout))
    try:
        prepared = prepare(files, kind, data.cleaning, str(work / "prepare"), source_name=name,
                           chunk_rows=data.chunk_rows, contract=contract, repository=repo.repository,
                           base_commit=base.commit_id, datasets_prefix=data.datasets_prefix)
        error = None
    except InputError as unreadable:
        error = unreadable
    raw = raw_upload.result()
    record = dict(layout=layout, source=source, source_name=name, files=files, raw_paths=[o.path for o in raw],
                  contract=contract, base_commit=base.commit_id, flow_run={"id": run_id})
    if error is not None:
        write_json(work / "manifest.json", manifest(**record, prepared=None, validated=None, error=str(error)))
        upload_files(repo.repository, branch, {layout.manifest: str(work / "manifest.json")})
        commit = commit_branch(repo.repository, branch, f"Raw {kind} input, unreadable ({batch_id})",
                               {**lineage, "sluice.decision": "unreadable"})
        message = (f"{error}\nNothing reached {repo.default_branch}. The raw input is kept on branch {branch!r} "
                   f"of {repo.repository} ({commit.url}).")
        _report(IngestResult(kind=kind, batch_id=batch_id, decision="unreadable", branch=branch,
                             branch_commit=commit, message=message), None)
        remove_work_dir(str(work))
        raise IngestRejected(message) from None

    if prepared.report.rows_out == 0 and prepared.report.dropped.get("already_published") == prepared.report.rows_in:
        delete_branch(repo.repository, branch)
        result = IngestResult(kind=kind, batch_id=batch_id, decision="nothing_new", branch=branch,
                              main_commit=base, rows_in=prepared.report.rows_in,
                              message=f"every row is already in {repo.default_branch}: nothing to publish")
        logger.info(result.message)
        _report(result, None)
        remove_work_dir(str(work))
        return result

    write_json(work / "manifest.json", manifest(**record, prepared=prepared, validated=None))
    written = upload_files.submit(repo.repository, branch, {layout.clean: prepared.clean_path,
                                                            layout.manifest: str(work / "manifest.json")})

    # Audit (on the local files, while they upload; the write commit still comes first).
    validated = validate(prepared, contract, repository=repo.repository, base_commit=base.commit_id,
                         datasets_prefix=data.datasets_prefix, data_docs=config.contracts.data_docs,
                         work_dir=str(work / "validate"))
    written.result()
    commit_branch(repo.repository, branch, f"Write {kind} batch {batch_id} (not yet validated)", lineage)
    summary = validated.summary
    write_json(work / "manifest.json", manifest(**record, prepared=prepared, validated=validated))
    files_to_stage = {layout.manifest: str(work / "manifest.json"),
                      **folder_files(Path(validated.reports_dir), layout.reports)}
    if validated.quarantine_path:  # the published file changed: invalid rows moved to quarantine
        files_to_stage[layout.clean] = validated.publish_path
        files_to_stage[layout.quarantine] = validated.quarantine_path
    upload_files(repo.repository, branch, files_to_stage)
    verdict = {**lineage, "sluice.decision": summary.decision, "sluice.rows_in": str(prepared.report.rows_in),
               "sluice.rows_published": str(summary.rows_published),
               "sluice.rows_quarantined": str(summary.rows_invalid if summary.decision != "reject" else 0)}
    audited = commit_branch(repo.repository, branch,
                            f"Validate {kind} batch {batch_id}: {summary.decision}", verdict)

    # Publish, or stop loudly.
    result = IngestResult(
        kind=kind, batch_id=batch_id, decision=summary.decision, branch=branch, branch_commit=audited,
        rows_in=prepared.report.rows_in, rows_published=summary.rows_published,
        rows_quarantined=summary.rows_invalid if summary.decision == "publish_with_quarantine" else 0,
        clean_path=layout.clean,
    )
    if summary.decision == "reject":
        result.message = _rejection_message(result, validated, repo.repository, repo.default_branch)
        _report(result, validated)
        remove_work_dir(str(work))
        raise IngestRejected(result.message)
    result.main_commit = merge_branch(repo.repository, branch, repo.default_branch,
                                      message=f"Publish {kind} batch {batch_id} ({summary.rows_published} rows)",
                                      metadata=verdict)
    delete_branch(repo.repository, branch)
    result.message = (f"published {summary.rows_published} {kind} rows to {repo.default_branch} at "
                      f"{result.main_commit.commit_id}" + (f"; {result.rows_quarantined} quarantined"
                                                           if result.rows_quarantined else ""))
    logger.info(result.message)
    _report(result, validated)
    remove_work_dir(str(work))
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
