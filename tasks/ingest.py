"""Ingest tasks: find the source, keep the raw input, prepare (read, clean,
deduplicate) and validate a batch, and lay out what goes to lakeFS.

A batch of kind K lands in the data repository as::

    datasets/K/raw/<batch>/…              the input exactly as received
    datasets/K/clean/<batch>.parquet      the published rows (what training reads)
    datasets/K/manifests/<batch>.json     source, counts, contract version, cleaning report
    datasets/K/reports/<batch>/…          validation report (JSON, Markdown) and Data Docs
    datasets/K/quarantine/<batch>.parquet invalid rows with their reasons (if any)
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from tqdm.auto import tqdm

from sluice.config import CleaningConfig, ContractsConfig
from sluice.contracts import Contract, contract_path, load_contract
from sluice.datasets import SourceFile, discover
from sluice.ingest import PreparedBatch, prepare_batch, read_frame
from sluice.validation import ValidationSummary, validate_batch
from tasks.lakefs import read_column_under

LOCAL = {"cache_policy": NO_CACHE}  # local work: a failure will not change by retrying


class BatchLayout(BaseModel):
    """Where one batch's files go in the data repository."""

    kind: str
    batch_id: str
    prefix: str  # datasets/<kind>

    @classmethod
    def of(cls, datasets_prefix: str, kind: str, batch_id: str) -> BatchLayout:
        return cls(kind=kind, batch_id=batch_id, prefix=f"{datasets_prefix}/{kind}")

    @property
    def raw(self) -> str:
        return f"{self.prefix}/raw/{self.batch_id}"

    @property
    def clean(self) -> str:
        return f"{self.prefix}/clean/{self.batch_id}.parquet"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}/manifests/{self.batch_id}.json"

    @property
    def reports(self) -> str:
        return f"{self.prefix}/reports/{self.batch_id}"

    @property
    def quarantine(self) -> str:
        return f"{self.prefix}/quarantine/{self.batch_id}.parquet"


def new_batch_id(flow_run_id: str | None) -> str:
    """Sortable and unique: UTC time, then the flow run it belongs to."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{(flow_run_id or 'local')[:8]}"


@task(name="load-contract", **LOCAL)
def load_kind_contract(kind: str, contracts: ContractsConfig) -> Contract:
    return load_contract(contract_path(contracts.directory, kind))


@task(name="find-source-files", **LOCAL)
def find_source_files(source: str) -> list[SourceFile]:
    files = discover(source)
    get_run_logger().info("%d file(s) to ingest from %s", len(files), source)
    return files


def raw_destinations(files: list[SourceFile], layout: BatchLayout) -> dict[str, str]:
    """``{lakeFS path: location}`` keeping each file's name (a saved dataset
    folder keeps its inner layout)."""
    destinations: dict[str, str] = {}
    for source in files:
        if source.format == "hf":
            root = Path(source.location)
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                destinations[f"{layout.raw}/{root.name}/{path.relative_to(root).as_posix()}"] = str(path)
        else:
            name = PurePosixPath(source.location.split("://", 1)[-1]).name
            key = f"{layout.raw}/{name}"
            while key in destinations:  # same name in two folders
                key = f"{layout.raw}/{len(destinations)}-{name}"
            destinations[key] = source.location
    return destinations


@task(name="prepare-batch", **LOCAL)
def prepare(
    files: list[SourceFile], kind: str, cleaning: CleaningConfig, work_dir: str, *, source_name: str,
    chunk_rows: int, contract: Contract, repository: str, base_commit: str, datasets_prefix: str,
) -> PreparedBatch:
    """Read, clean and deduplicate the batch (rows already in ``main`` count
    as duplicates)."""
    logger = get_run_logger()
    published = set(read_column_under(repository, base_commit, f"{datasets_prefix}/{kind}/clean/", "id"))
    total = sum(f.size_bytes or 0 for f in files) or None
    regex_fields = {p.field for p in contract.rules.patterns} - {"source"}
    with tqdm(desc=f"ingest {kind}", unit=" rows", total=None, disable=None) as bar:
        prepared = prepare_batch(files, kind, cleaning, Path(work_dir), default_source=source_name,
                                 chunk_rows=chunk_rows, published_ids=published, regex_fields=sorted(regex_fields),
                                 progress=bar.update)
    report = prepared.report
    logger.info("%s: %d rows read (%s bytes), %d kept; dropped %s; PII redacted %s", kind, report.rows_in,
                total, report.rows_out, report.dropped or "none", report.pii_redacted or "none")
    return prepared


class ValidatedBatch(BaseModel):
    summary: ValidationSummary
    publish_path: str  # the rows to publish (all valid rows); the cleaned file itself when all are valid
    quarantine_path: str | None  # the invalid rows, with reasons
    reports_dir: str  # validation.json, validation.md, data_docs/


@task(name="validate-batch", **LOCAL)
def validate(
    prepared: PreparedBatch, contract: Contract, *, repository: str, base_commit: str, datasets_prefix: str,
    data_docs: bool, work_dir: str,
) -> ValidatedBatch:
    """Run the contract with Great Expectations; split valid from invalid rows."""
    logger = get_run_logger()
    keys: set[str] = set()
    for other in contract.rules.no_overlap_with:
        keys.update(read_column_under(repository, base_commit, f"{datasets_prefix}/{other}/clean/", "overlap_key"))
    work = Path(work_dir)
    reports = work / "reports"
    docs = reports / "data_docs" if data_docs else None
    frame = read_frame(prepared.frame_path)
    run = validate_batch(contract, frame, prepared.report.duplicate_rate, keys, docs)

    publish_path, quarantine_path = Path(prepared.clean_path), None  # all valid: publish the cleaned file as is
    if run.invalid.any():
        clean = pq.read_table(prepared.clean_path)
        publish_path, quarantine_path = work / "publish.parquet", work / "quarantine.parquet"
        pq.write_table(clean.filter(pa.array(~run.invalid)), publish_path)
        quarantined = clean.filter(pa.array(run.invalid)).append_column(
            "quarantine_reasons", pa.array(run.reasons[run.invalid], pa.string()))
        pq.write_table(quarantined, quarantine_path)
    summary = run.summary
    (reports / "validation.json").write_text(summary.model_dump_json(indent=2))
    (reports / "validation.md").write_text(validation_markdown(summary))
    logger.info("contract %s v%s: %s (%d of %d rows invalid)", contract.kind, contract.version, summary.decision,
                summary.rows_invalid, summary.rows_checked)
    return ValidatedBatch(summary=summary, publish_path=str(publish_path),
                          quarantine_path=str(quarantine_path) if quarantine_path else None,
                          reports_dir=str(reports))


def validation_markdown(summary: ValidationSummary) -> str:
    lines = [f"# {summary.kind} batch against contract v{summary.contract_version}: {summary.decision}", ""]
    lines += [f"- rows checked: {summary.rows_checked}, invalid: {summary.rows_invalid} "
              f"({summary.invalid_fraction:.2%}), published: {summary.rows_published}"]
    lines += [f"- {reason}" for reason in summary.reasons]
    lines += ["", "| rule | check | result | rows failing | observed | e.g. ids |", "|---|---|---|---|---|---|"]
    for o in summary.outcomes:
        result = "error" if o.error else ("pass" if o.success else "FAIL")
        ids = ", ".join(f"`{i[:12]}`" for i in o.failing_ids[:3])
        observed = "" if o.observed is None else str(o.observed)
        lines.append(f"| `{o.rule}` | {o.description} | {result} | {o.unexpected_count} | {observed} | {ids} |")
    return "\n".join(lines) + "\n"


def manifest(
    *, layout: BatchLayout, source: str, source_name: str, files: list[SourceFile], raw_paths: list[str],
    contract: Contract, prepared: PreparedBatch | None, validated: ValidatedBatch | None, base_commit: str,
    flow_run: dict[str, str], error: str | None = None,
) -> dict[str, Any]:
    """The batch's record: where it came from and what happened to it."""
    return {
        "batch": layout.batch_id, "kind": layout.kind, "created_at": datetime.now(timezone.utc).isoformat(),
        "source": {"location": source, "name": source_name,
                   "files": [{"location": f.location, "format": f.format, "size_bytes": f.size_bytes} for f in files],
                   "raw_paths": raw_paths},
        "contract": {"kind": contract.kind, "version": contract.version},
        "base_commit": base_commit,
        "paths": {"clean": layout.clean, "reports": layout.reports, "quarantine": layout.quarantine},
        "cleaning": prepared.report.model_dump() if prepared else None,
        "validation": validated.summary.model_dump(exclude={"outcomes"}) if validated else None,
        "prefect": flow_run,
        "error": error,
    }


def write_json(path: Path, document: dict[str, Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str))
    return str(path)


def folder_files(local: Path, lakefs_prefix: str) -> dict[str, str]:
    """``{lakeFS path: local file}`` for everything under a local folder."""
    return {f"{lakefs_prefix}/{p.relative_to(local).as_posix()}": str(p) for p in sorted(local.rglob("*"))
            if p.is_file()}


@task(name="clean-up-work-dir", **LOCAL)
def remove_work_dir(work_dir: str) -> None:
    """Scratch space goes once its files are in lakeFS."""
    if Path(work_dir).exists():
        shutil.rmtree(work_dir)
