"""The audit of a prepared batch: its contract run with Great Expectations,
the valid rows split from the invalid ones, and the reports written beside
them (``validation.json``, ``validation.md``, Data Docs)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from sluice.core.data.contracts import Contract
from sluice.core.data.prepare import PreparedBatch, read_frame
from sluice.core.data.validation import ValidationSummary, validate_batch


class ValidatedBatch(BaseModel):
    summary: ValidationSummary
    publish_path: str  # the rows to publish (all valid rows); the cleaned file itself when all are valid
    quarantine_path: str | None  # the invalid rows, with reasons
    reports_dir: str  # validation.json, validation.md, data_docs/


def audit_batch(prepared: PreparedBatch, contract: Contract, overlap_keys: set[str], *, data_docs: bool,
                work_dir: Path) -> ValidatedBatch:
    """Run the contract; split valid from invalid rows; write the reports."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reports = work_dir / "reports"
    frame = read_frame(prepared.frame_path)
    run = validate_batch(contract, frame, prepared.report.duplicate_rate, overlap_keys,
                         reports / "data_docs" if data_docs else None)
    publish_path, quarantine_path = Path(prepared.clean_path), None  # all valid: publish the cleaned file as is
    if run.invalid.any():
        clean = pq.read_table(prepared.clean_path)
        publish_path, quarantine_path = work_dir / "publish.parquet", work_dir / "quarantine.parquet"
        pq.write_table(clean.filter(pa.array(~run.invalid)), publish_path)
        quarantined = clean.filter(pa.array(run.invalid)).append_column(
            "quarantine_reasons", pa.array(run.reasons[run.invalid], pa.string()))
        pq.write_table(quarantined, quarantine_path)
    summary = run.summary
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "validation.json").write_text(summary.model_dump_json(indent=2))
    (reports / "validation.md").write_text(validation_markdown(summary))
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
