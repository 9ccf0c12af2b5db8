"""Run a data contract with Great Expectations (ephemeral context, in code).

The contract's row checks run on the validation frame (one row of small facts
per cleaned row); its dataset checks run on a one-row summary of what would
be published. The outcome says, per rule, whether it held, how many rows
broke it and which; every invalid row gets its reasons; and a plain function,
:func:`decide_batch`, turns that into publish / publish with quarantine /
reject, as the contract's ``on_failure`` says.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from sluice.core.data.contracts import Check, Contract, OnFailure, compile_checks

ContractDecision = Literal["publish", "publish_with_quarantine", "reject"]  # what a contract run decides
_SAMPLE_IDS = 20  # failing ids kept per rule in the summary (all are in the quarantine file)
_DOCS_IDS = 200  # failing ids shown per rule in Data Docs
SITE = "sluicegate"


class RuleOutcome(BaseModel):
    rule: str
    description: str
    level: Literal["row", "dataset"]
    success: bool
    unexpected_count: int = 0
    observed: Any = None
    failing_ids: list[str] = []
    error: str | None = None


class ValidationSummary(BaseModel):
    """What a contract said about one batch (small: safe to pass around)."""

    kind: str
    contract_version: str
    rows_checked: int
    rows_invalid: int
    rows_published: int
    invalid_fraction: float
    decision: ContractDecision
    reasons: list[str]  # why the batch was not published as is
    outcomes: list[RuleOutcome]
    dataset_stats: dict[str, int | float]

    @property
    def failed_rules(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if not o.success]


@dataclass
class ValidationRun:
    summary: ValidationSummary
    invalid: np.ndarray  # bool per frame row: quarantined (or, on reject, what was invalid)
    reasons: np.ndarray  # object per frame row: "; "-joined reasons, "" if valid


# ------------------------------------------------------------------ the decision


def decide_batch(
    on_failure: OnFailure, rows_checked: int, rows_invalid: int, outcomes: list[RuleOutcome]
) -> tuple[ContractDecision, list[str]]:
    """Publish, publish without the invalid rows, or reject — and why.

    ``fail``: any invalid row rejects. ``quarantine``: invalid rows are set
    aside while their share stays within ``max_invalid_fraction``. Either way,
    a failed dataset rule (row count, duplicate or PII rate) rejects, and so
    does any check that could not run: an unchecked rule is not a kept one.
    """
    reasons = [f"{o.description}: the check could not run ({o.error})" for o in outcomes if o.error]
    fraction = rows_invalid / rows_checked if rows_checked else 0.0
    if rows_invalid and on_failure.action == "fail":
        reasons.append(f"{rows_invalid} of {rows_checked} rows break the contract and it says fail")
    elif rows_invalid and fraction > on_failure.max_invalid_fraction:
        reasons.append(f"{rows_invalid} of {rows_checked} rows are invalid ({fraction:.1%}), more than the "
                       f"{on_failure.max_invalid_fraction:.1%} the contract allows to quarantine")
    for outcome in outcomes:
        if outcome.level == "dataset" and not outcome.success and not outcome.error:
            reasons.append(f"{outcome.description} — observed {outcome.observed}")
    if reasons:
        return "reject", reasons
    if rows_invalid:
        return "publish_with_quarantine", [f"{rows_invalid} invalid row(s) quarantined ({fraction:.1%})"]
    return "publish", []


# ------------------------------------------------------------------ Great Expectations


def _import_gx():  # type: ignore[no-untyped-def]
    """Import GX quietly: it logs hundreds of lines at import, turns on
    ``logging.captureWarnings`` for the whole process, and fingerprints every
    batch (md5 of the frame, ~0.5 s per million rows) for a marker we never use."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.execution_engine.pandas_execution_engine as pandas_engine

    logging.captureWarnings(False)
    for name in list(logging.root.manager.loggerDict):  # some GX modules set INFO on their own loggers
        if name.startswith("great_expectations."):
            logging.getLogger(name).setLevel(logging.NOTSET)
    pandas_engine.HASH_THRESHOLD = 0  # private knob (pinned GX 1.24.1): no batch fingerprint
    return gx


def _expectation(gx: Any, check: Check, index: int) -> Any:
    cls = getattr(gx.expectations, check.expectation)
    kwargs = {k: v for k, v in check.kwargs if v is not None}
    # GX renders descriptions as text and reads "$name" as a template variable
    description = html.escape(check.description).replace("$", "")
    return cls(**kwargs, description=description, meta={"rule": check.rule, "index": index})


def _context(gx: Any, docs_dir: Path | None) -> Any:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    if "local_site" in context.list_data_docs_sites():
        context.delete_data_docs_site("local_site")
    if docs_dir is not None:
        context.add_data_docs_site(SITE, {
            "class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return context


def _run_suite(gx: Any, context: Any, name: str, checks: list[Check], frame: pd.DataFrame) -> Any:
    batch = (context.data_sources.add_pandas(f"{name}-source").add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe("whole"))
    suite = context.suites.add(gx.ExpectationSuite(
        name=name, expectations=[_expectation(gx, check, i) for i, check in enumerate(checks)]))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    # Row positions come back (not ids): we map them to ids in one vectorized step,
    # much faster than GX's per-row id lookup.
    return definition.run(batch_parameters={"dataframe": frame},
                          result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False})


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def _error(result: Any) -> str | None:
    info = result.exception_info or {}
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    messages = [v.get("exception_message") for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    return "; ".join(m for m in messages if m) or None


def _outcomes(result: Any, checks: list[Check], frame: pd.DataFrame) -> tuple[list[RuleOutcome], dict[int, np.ndarray]]:
    """Per check (in contract order): its outcome and the failing row positions."""
    by_index = {r.expectation_config.meta["index"]: r for r in result.results}
    ids = frame["id"].to_numpy() if "id" in frame else None
    outcomes, failing = [], {}
    for index, check in enumerate(checks):
        r = by_index[index]
        details = r.result or {}
        positions = np.asarray(details.get("unexpected_index_list") or [], dtype=np.int64)
        failing[index] = positions
        error = _error(r)
        outcomes.append(RuleOutcome(
            rule=check.rule, description=check.description, level=check.level,
            success=bool(r.success) and error is None,
            unexpected_count=int(details.get("unexpected_count") or 0),
            observed=_plain(details.get("observed_value")),
            failing_ids=[str(i) for i in ids[positions[:_SAMPLE_IDS]]] if ids is not None else [],
            error=error,
        ))
    return outcomes, failing


def _show_ids_in_docs(context: Any, result: Any, frame: pd.DataFrame) -> None:
    """GX stored the result with row positions; store a copy for Data Docs
    that names the first failing rows by id (and drops the full value list)."""
    from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

    for r in result.results:
        details = r.result or {}
        positions = details.get("unexpected_index_list")
        if not positions or isinstance(positions[0], dict):
            continue
        column = r.expectation_config.kwargs.get("column")
        rows = frame.iloc[np.asarray(positions[:_DOCS_IDS], dtype=np.int64)]
        values = rows[column].tolist() if column in frame else [None] * len(rows)
        records = [{column: _plain(v), "id": i} for v, i in zip(values, rows["id"].tolist(), strict=True)]
        details["unexpected_index_list"] = records
        details["partial_unexpected_index_list"] = records[: len(details.get("partial_unexpected_list") or records)]
        details["unexpected_index_column_names"] = ["id"]
        details.pop("unexpected_list", None)
    store = context.validation_results_store
    for key in store.list_keys():
        if isinstance(key, ValidationResultIdentifier) and key.run_id == result.meta["run_id"] and \
                key.expectation_suite_identifier.name == result.suite_name:
            store.set(key, result)


def validate_batch(
    contract: Contract,
    frame: pd.DataFrame,
    duplicate_rate: float,
    published_prompt_keys: set[str] | None = None,
    docs_dir: Path | None = None,
) -> ValidationRun:
    """Check a cleaned batch's validation frame against its contract.

    ``published_prompt_keys``: the prompt keys already published for the kinds
    in the contract's ``no_overlap_with`` (rows matching one are invalid).
    """
    gx = _import_gx()
    frame = frame.reset_index(drop=True)
    if contract.rules.no_overlap_with:
        keys = np.array(sorted(published_prompt_keys or ()), dtype=object)
        frame["overlaps"] = np.isin(frame["overlap_key"].to_numpy(dtype=object), keys)
    checks = compile_checks(contract)
    row_checks = [c for c in checks if c.level == "row"]
    dataset_checks = [c for c in checks if c.level == "dataset"]
    context = _context(gx, docs_dir)
    name = f"{contract.kind}-contract-v{contract.version}"

    row_result = _run_suite(gx, context, f"{name}-rows", row_checks, frame)
    row_outcomes, failing = _outcomes(row_result, row_checks, frame)
    invalid = np.zeros(len(frame), dtype=bool)
    reasons = np.full(len(frame), "", dtype=object)
    for index, positions in failing.items():
        if len(positions):
            invalid[positions] = True
            reasons[positions] = reasons[positions] + row_checks[index].description + "; "
    if "schema_errors" in frame and not frame["types_ok"].all():
        bad = ~frame["types_ok"].to_numpy(dtype=bool)
        reasons[bad] = reasons[bad] + frame["schema_errors"].to_numpy(dtype=object)[bad] + "; "
    for position in np.nonzero(invalid)[0]:
        reasons[position] = reasons[position].removesuffix("; ")

    rows_invalid = int(invalid.sum())
    fraction = rows_invalid / len(frame) if len(frame) else 0.0
    published = ~invalid  # what would be published, if anything is
    stats = {
        "rows_published": int(published.sum()),
        "duplicate_rate": float(duplicate_rate),
        "pii_rate": float((frame["pii_remaining"].to_numpy()[published] > 0).mean()) if published.any() else 0.0,
    }
    dataset_frame = pd.DataFrame({k: [v] for k, v in stats.items()} | {"id": ["dataset"]})
    dataset_result = _run_suite(gx, context, f"{name}-dataset", dataset_checks, dataset_frame)
    dataset_outcomes, _ = _outcomes(dataset_result, dataset_checks, dataset_frame)

    decision, why = decide_batch(contract.on_failure, len(frame), rows_invalid, row_outcomes + dataset_outcomes)
    if docs_dir is not None:
        from sluice.core.data.data_docs import make_offline

        _show_ids_in_docs(context, row_result, frame)
        context.build_data_docs(site_names=[SITE])
        make_offline(docs_dir)
    summary = ValidationSummary(
        kind=contract.kind, contract_version=contract.version, rows_checked=len(frame), rows_invalid=rows_invalid,
        rows_published=int(published.sum()) if decision != "reject" else 0, invalid_fraction=fraction,
        decision=decision, reasons=why, outcomes=row_outcomes + dataset_outcomes, dataset_stats=stats,
    )
    return ValidationRun(summary=summary, invalid=invalid, reasons=reasons)
