"""The ledger: every move of a registry alias, so "which version served at
time T" has an answer.

Each move is an MLflow run in the experiment ``<experiment>-registry-ledger``
whose tags say which model, which alias, from which version to which, when,
why (promotion, rollback or reconcile) and which Prefect flow run did it;
the evidence (the gate's reasons, the metrics compared) is an artifact of
that run. It lives in the same MLflow store as the registry. Aliases are
moved first and recorded right after; a crash in between is repaired by
:func:`reconcile_ledger`, which records what the registry shows and the
ledger lacks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import BaseModel

from sluice.core import lineage
from sluice.core.lineage import FlowRun, LedgerAction
from sluice.core.registry.client import CHALLENGER, CHAMPION, PREVIOUS, ModelRegistry
from sluice.core.registry.tracking import ensure_experiment


class LedgerEntry(BaseModel):
    at: datetime
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    action: LedgerAction
    flow_run: str
    evidence_run: str  # the ledger run; its artifact evidence.json holds the evidence
    summary: str | None = None  # the evidence in one line, when the mover gave one (a canary's verdict)


def record_move(registry: ModelRegistry, alias: str, from_version: str | None, to_version: str | None,
                action: LedgerAction, evidence: dict, flow_run: FlowRun) -> None:
    """One alias move as a ledger run, with its evidence."""
    experiment_id = ensure_experiment(registry.target, registry.target.ledger_experiment)
    at = datetime.now(UTC)
    tags = lineage.ledger_tags(flow_run, model=registry.model_name, alias=alias, from_version=from_version,
                               to_version=to_version, action=action, at=at)
    if evidence.get("summary"):  # shown by `sluice registry history` without opening the artifact
        tags[lineage.LEDGER_SUMMARY] = str(evidence["summary"])[:5000]
    run = registry.client.create_run(experiment_id, start_time=int(at.timestamp() * 1000), tags=tags)
    registry.client.log_text(run.info.run_id, json.dumps(evidence, indent=2, default=str), "evidence.json")
    registry.client.set_terminated(run.info.run_id)


def read_ledger(registry: ModelRegistry) -> list[LedgerEntry]:
    """Every recorded alias move of the model, oldest first."""
    experiment_id = ensure_experiment(registry.target, registry.target.ledger_experiment)
    runs, token = [], None
    while True:
        page = registry.client.search_runs([experiment_id], f"tags.`{lineage.LEDGER_MODEL}` = '{registry.model_name}'",
                                           order_by=["attributes.start_time ASC"], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    return [_entry(run) for run in runs]


def _entry(run) -> LedgerEntry:  # type: ignore[no-untyped-def]
    tags = run.data.tags
    return LedgerEntry(at=datetime.fromisoformat(tags[lineage.LEDGER_AT]), model=tags[lineage.LEDGER_MODEL],
                       alias=tags[lineage.LEDGER_ALIAS], from_version=tags.get(lineage.LEDGER_FROM) or None,
                       to_version=tags.get(lineage.LEDGER_TO) or None, action=tags[lineage.LEDGER_ACTION],
                       flow_run=tags[lineage.LEDGER_FLOW_RUN], evidence_run=run.info.run_id,
                       summary=tags.get(lineage.LEDGER_SUMMARY))


def served_at(entries: list[LedgerEntry], moment: datetime) -> str | None:
    """The @champion version at ``moment``, from the ledger."""
    champion = None
    for entry in entries:
        if entry.alias == CHAMPION and entry.at <= moment:
            champion = entry.to_version
    return champion


def reconcile_ledger(registry: ModelRegistry, flow_run: FlowRun) -> list[str]:
    """Record alias positions the ledger does not know (an interrupted move); what was repaired."""
    entries = read_ledger(registry)
    repaired = []
    for alias in (CHAMPION, PREVIOUS, CHALLENGER):
        recorded = next((e.to_version for e in reversed(entries) if e.alias == alias), None)
        actual = registry.alias_version(alias)
        if recorded != actual:
            record_move(registry, alias, recorded, actual, "reconcile",
                        {"why": "the registry showed this alias position and the ledger did not (an interrupted move)"},
                        flow_run)
            repaired.append(f"@{alias}: {recorded} → {actual}")
    return repaired
