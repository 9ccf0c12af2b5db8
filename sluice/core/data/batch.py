"""One ingest batch: where it lands in the data repository, its manifest, and
what the write–audit–publish flow says about it.

A batch of kind K lands in the data repository as::

    datasets/K/raw/<batch>/…              the input exactly as received
    datasets/K/clean/<batch>.parquet      the published rows (what training reads)
    datasets/K/manifests/<batch>.json     source, counts, contract version, cleaning report
    datasets/K/reports/<batch>/…          validation report (JSON, Markdown) and Data Docs
    datasets/K/quarantine/<batch>.parquet invalid rows with their reasons (if any)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel

from sluice.core import lineage
from sluice.core.data.audit import ValidatedBatch
from sluice.core.data.contracts import Contract
from sluice.core.data.prepare import PreparedBatch
from sluice.core.data.readers import SourceFile
from sluice.core.errors import ExplainedError
from sluice.core.lake.records import CommitRef
from sluice.core.lineage import BatchDecision, FlowRun


class IngestRejected(ExplainedError, RuntimeError):
    """The batch did not reach main; the message says why and where to look."""


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


class IngestResult(BaseModel):
    kind: str
    batch_id: str
    decision: BatchDecision
    branch: str
    branch_commit: CommitRef | None = None
    main_commit: CommitRef | None = None  # set when merged
    rows_in: int = 0
    rows_published: int = 0
    rows_quarantined: int = 0
    clean_path: str | None = None  # lakeFS path of the published rows
    message: str = ""


def new_batch_id(flow_run_id: str | None) -> str:
    """Sortable and unique: UTC time, then the flow run it belongs to."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{(flow_run_id or 'local')[:8]}"


def source_name_of(source: str, kind: str) -> str:
    """The name rows without a ``source`` field get: the file or folder name."""
    return Path(source.rstrip("/").split("://", 1)[-1]).stem or kind


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

    @classmethod
    def open(cls, *, kind: str, source: str, source_name: str | None, contract: Contract, repository: str,
             main: str, base: CommitRef, datasets_prefix: str, work_dir: Path, flow_run: FlowRun) -> Batch:
        batch_id = new_batch_id(flow_run.id)
        return cls(kind=kind, name=source_name or source_name_of(source, kind), source=source, repository=repository,
                   main=main, base=base, batch_id=batch_id, branch=f"ingest-{kind}-{batch_id}",
                   layout=BatchLayout.of(datasets_prefix, kind, batch_id),
                   lineage=lineage.batch_commit_metadata(flow_run, kind=kind, batch_id=batch_id, source=source,
                                                         contract_version=contract.version,
                                                         base_commit=base.commit_id),
                   work=work_dir / batch_id)

    def write_manifest(self, files: list[SourceFile], contract: Contract, raw: list[str],
                       prepared: PreparedBatch | None, validated: ValidatedBatch | None,
                       error: str | None = None) -> str:
        return write_json(self.work / "manifest.json", manifest(
            layout=self.layout, source=self.source, source_name=self.name, files=files, raw_paths=raw,
            contract=contract, prepared=prepared, validated=validated, base_commit=self.base.commit_id,
            flow_run={"id": self.lineage[lineage.FLOW_RUN_ID]}, error=error))

    def verdict(self, decision: BatchDecision, prepared: PreparedBatch | None = None,
                validated: ValidatedBatch | None = None) -> dict[str, str]:
        """Commit metadata: the lineage plus the verdict."""
        summary = validated.summary if validated else None
        return lineage.batch_verdict_metadata(
            self.lineage, decision, rows_in=prepared.report.rows_in if prepared else 0,
            rows_published=summary.rows_published if summary else 0,
            rows_quarantined=summary.rows_invalid if summary and summary.decision != "reject" else 0)

    def result(self, prepared: PreparedBatch, validated: ValidatedBatch, audited: CommitRef) -> IngestResult:
        summary = validated.summary
        return IngestResult(
            kind=self.kind, batch_id=self.batch_id, decision=summary.decision, branch=self.branch,
            branch_commit=audited, rows_in=prepared.report.rows_in, rows_published=summary.rows_published,
            rows_quarantined=summary.rows_invalid if summary.decision == "publish_with_quarantine" else 0,
            clean_path=self.layout.clean)


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


def audit_destinations(batch: Batch, validated: ValidatedBatch, manifest_path: str) -> dict[str, str]:
    """What the audit commit stages: the manifest, the reports and Data Docs, and, when rows were
    quarantined, the published rows without them and the quarantine."""
    staged = {batch.layout.manifest: manifest_path, **folder_files(Path(validated.reports_dir), batch.layout.reports)}
    if validated.quarantine_path:  # the published file changed: invalid rows moved to quarantine
        staged[batch.layout.clean] = validated.publish_path
        staged[batch.layout.quarantine] = validated.quarantine_path
    return staged


def manifest(
    *, layout: BatchLayout, source: str, source_name: str, files: list[SourceFile], raw_paths: list[str],
    contract: Contract, prepared: PreparedBatch | None, validated: ValidatedBatch | None, base_commit: str,
    flow_run: dict[str, str], error: str | None = None,
) -> dict[str, Any]:
    """The batch's record: where it came from and what happened to it."""
    return {
        "batch": layout.batch_id, "kind": layout.kind, "created_at": datetime.now(UTC).isoformat(),
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
