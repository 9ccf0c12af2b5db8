"""Ingest tasks: load the contract, find the source files, prepare (read,
clean, deduplicate) and audit a batch, clean up. The work is in
``sluice.core.data``; these add logging, progress and the task boundaries."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import get_run_logger, task
from tqdm.auto import tqdm

from sluice.core.config import CleaningConfig, ContractsConfig
from sluice.core.data.audit import ValidatedBatch, audit_batch
from sluice.core.data.contracts import Contract, contract_path, load_contract
from sluice.core.data.prepare import PreparedBatch, prepare_batch
from sluice.core.data.readers import SourceFile, discover
from tasks import UNCACHED


@task(name="load-contract", **UNCACHED)
def load_kind_contract(kind: str, contracts: ContractsConfig) -> Contract:
    return load_contract(contract_path(contracts.directory, kind))


@task(name="find-source-files", **UNCACHED)
def find_source_files(source: str) -> list[SourceFile]:
    files = discover(source)
    get_run_logger().info("%d file(s) to ingest from %s", len(files), source)
    return files


@task(name="prepare-batch", **UNCACHED)
def prepare(files: list[SourceFile], kind: str, cleaning: CleaningConfig, work_dir: str, *, source_name: str,
            chunk_rows: int, contract: Contract, published_ids: set[str]) -> PreparedBatch:
    """Read, clean and deduplicate the batch (rows already in ``main`` count as duplicates)."""
    regex_fields = sorted({p.field for p in contract.rules.patterns} - {"source"})
    with tqdm(desc=f"ingest {kind}", unit=" rows", total=None, disable=None) as bar:
        prepared = prepare_batch(files, kind, cleaning, Path(work_dir), default_source=source_name,
                                 chunk_rows=chunk_rows, published_ids=published_ids, regex_fields=regex_fields,
                                 progress=bar.update)
    report = prepared.report
    get_run_logger().info("%s: %d rows read (%s bytes), %d kept; dropped %s; PII redacted %s", kind, report.rows_in,
                          sum(f.size_bytes or 0 for f in files) or None, report.rows_out, report.dropped or "none",
                          report.pii_redacted or "none")
    if report.unmapped_fields:  # never dropped in silence: they stay in the raw input on the branch
        get_run_logger().warning("%s: fields no %s shape reads (kept only in the raw input): %s", kind, kind,
                                 report.unmapped_fields)
    return prepared


@task(name="validate-batch", **UNCACHED)
def validate(prepared: PreparedBatch, contract: Contract, overlap_keys: set[str], *, data_docs: bool,
             work_dir: str) -> ValidatedBatch:
    """Run the contract with Great Expectations; split valid from invalid rows."""
    validated = audit_batch(prepared, contract, overlap_keys, data_docs=data_docs, work_dir=Path(work_dir))
    summary = validated.summary
    get_run_logger().info("contract %s v%s: %s (%d of %d rows invalid)", contract.kind, contract.version,
                          summary.decision, summary.rows_invalid, summary.rows_checked)
    return validated


@task(name="clean-up-work-dir", **UNCACHED)
def remove_work_dir(work_dir: str) -> None:
    """Scratch space goes once its files are in lakeFS."""
    if Path(work_dir).exists():
        shutil.rmtree(work_dir)
