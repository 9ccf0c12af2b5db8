"""The MLflow model registry: versions with their lineage, the @champion and
@previous aliases, and a ledger of every alias move.

The ledger answers "which version served at time T". Each move is an MLflow
run in the experiment ``<experiment>-registry-ledger`` whose tags say which
model, which alias, from which version to which, when, why (decision or
rollback) and which Prefect flow run did it; the evidence (the gate's
reasons, the metrics compared) is an artifact of that run. It lives in the
same MLflow store as the registry, so a server-backed registry has a
server-backed ledger. Aliases are moved first and recorded right after; a
crash in between is repaired by ``reconcile_ledger``, which records what the
registry shows and the ledger lacks.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel

from sluice.config import SluiceConfig
from sluice.promotion import alias_moves, rollback_moves
from sluice.tracking import TrackingTarget, ensure_experiment, quiet_mlflow, tracking_target

LOCAL = {"cache_policy": NO_CACHE}
CHAMPION, PREVIOUS = "champion", "previous"


class ModelVersionRef(BaseModel):
    name: str
    version: str
    run_id: str | None
    source: str
    created: bool  # False: the version existed already (a rerun), nothing was registered


class LedgerEntry(BaseModel):
    at: datetime
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    action: str  # promote | rollback | reconcile
    flow_run: str
    evidence_run: str  # the ledger run; its artifact evidence.json holds the evidence


def _client(target: TrackingTarget):  # type: ignore[no-untyped-def]
    quiet_mlflow()
    from mlflow import MlflowClient

    return MlflowClient(target.tracking_uri)


def _missing(error: Exception) -> bool:
    return getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def alias_version(config: SluiceConfig, alias: str) -> str | None:
    """The version an alias points at; None when the model or alias does not exist (and only then)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_target(config.tracking))
    try:
        return str(client.get_model_version_by_alias(config.registry.model_name, alias).version)
    except MlflowException as error:
        # no such model: RESOURCE_DOES_NOT_EXIST; no such alias: INVALID_PARAMETER_VALUE "... alias X not found"
        message = str(error).lower()
        if _missing(error) or ("alias" in message and "not found" in message):
            return None
        raise


# ------------------------------------------------------------------ versions


@task(name="register-model-version", **LOCAL)
def register_model_version(config: SluiceConfig, training_run_id: str, lineage: dict[str, str]) -> ModelVersionRef:
    """Register the training run's merged model, once: a rerun finds the
    version it registered before instead of adding a duplicate."""
    from mlflow.exceptions import MlflowException

    name = config.registry.model_name
    client = _client(tracking_target(config.tracking))
    try:
        client.create_registered_model(name, description="Fine-tuned by Sluicegate; @champion is served.")
    except MlflowException as error:
        if getattr(error, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{training_run_id}'")
    if existing:
        version = max(existing, key=lambda v: int(v.version))
        get_run_logger().info("model version %s/%s already holds run %s: not registering again", name,
                              version.version, training_run_id)
        return ModelVersionRef(name=name, version=str(version.version), run_id=training_run_id,
                               source=version.source, created=False)
    source = f"{client.get_run(training_run_id).info.artifact_uri.rstrip('/')}/model"
    version = client.create_model_version(name, source=source, run_id=training_run_id,
                                          tags={k: v for k, v in lineage.items() if v},
                                          description=f"data commit {lineage.get('lakefs.commit', '?')}")
    get_run_logger().info("registered %s version %s from run %s", name, version.version, training_run_id)
    return ModelVersionRef(name=name, version=str(version.version), run_id=training_run_id, source=source,
                           created=True)


@task(name="download-model-version", **LOCAL)
def download_model_version(config: SluiceConfig, version: str, into: str) -> str:
    """The version's model files in a local folder (for evaluation or serving)."""
    import mlflow

    target = tracking_target(config.tracking)
    # the client's own registry: a models:/ URI would go to the process-wide registry URI
    source = _client(target).get_model_version_download_uri(config.registry.model_name, version)
    return str(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=into,
                                                   tracking_uri=target.tracking_uri))


@task(name="tag-version", **LOCAL)
def tag_version(config: SluiceConfig, version: str, tags: dict[str, str]) -> None:
    client = _client(tracking_target(config.tracking))
    for key, value in tags.items():
        client.set_model_version_tag(config.registry.model_name, version, key, value[:5000])


# ------------------------------------------------------------------ aliases and the ledger


def _ledger_experiment(config: SluiceConfig) -> tuple[TrackingTarget, str]:
    target = tracking_target(config.tracking)
    return target, ensure_experiment(target, f"{config.tracking.experiment}-registry-ledger")


def _record(config: SluiceConfig, alias: str, from_version: str | None, to_version: str | None, action: str,
            evidence: dict) -> None:
    target, experiment_id = _ledger_experiment(config)
    client = _client(target)
    at = datetime.now(UTC)
    tags = {"ledger.model": config.registry.model_name, "ledger.alias": alias,
            "ledger.from": from_version or "", "ledger.to": to_version or "", "ledger.action": action,
            "ledger.at": at.isoformat(), "ledger.flow_run": str(flow_run.get_id() or "outside a flow run"),
            "mlflow.runName": f"{alias}: {from_version or '—'} → {to_version or '—'}"}
    run = client.create_run(experiment_id, start_time=int(at.timestamp() * 1000), tags=tags)
    client.log_text(run.info.run_id, json.dumps(evidence, indent=2, default=str), "evidence.json")
    client.set_terminated(run.info.run_id)


def ledger(config: SluiceConfig) -> list[LedgerEntry]:
    """Every recorded alias move of the configured model, oldest first."""
    target, experiment_id = _ledger_experiment(config)
    client = _client(target)
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], f"tags.`ledger.model` = '{config.registry.model_name}'",
                                  order_by=["attributes.start_time ASC"], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    return [LedgerEntry(at=datetime.fromisoformat(r.data.tags["ledger.at"]), model=r.data.tags["ledger.model"],
                        alias=r.data.tags["ledger.alias"], from_version=r.data.tags.get("ledger.from") or None,
                        to_version=r.data.tags.get("ledger.to") or None, action=r.data.tags["ledger.action"],
                        flow_run=r.data.tags["ledger.flow_run"], evidence_run=r.info.run_id) for r in runs]


def served_at(entries: list[LedgerEntry], moment: datetime) -> str | None:
    """The @champion version at ``moment``, from the ledger."""
    champion = None
    for entry in entries:
        if entry.alias == CHAMPION and entry.at <= moment:
            champion = entry.to_version
    return champion


def _set_alias(client, name: str, alias: str, version: str | None) -> None:  # type: ignore[no-untyped-def]
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, version)


@task(name="reconcile-ledger", **LOCAL)
def reconcile_ledger(config: SluiceConfig) -> list[str]:
    """Record alias positions the ledger does not know (an interrupted move)."""
    entries = ledger(config)
    repaired = []
    for alias in (CHAMPION, PREVIOUS):
        recorded = next((e.to_version for e in reversed(entries) if e.alias == alias), None)
        actual = alias_version(config, alias)
        if recorded != actual:
            _record(config, alias, recorded, actual, "reconcile",
                    {"why": "the registry showed this alias position and the ledger did not (an interrupted move)"})
            repaired.append(f"@{alias}: {recorded} → {actual}")
    if repaired:
        get_run_logger().warning("ledger repaired: %s", "; ".join(repaired))
    return repaired


@task(name="move-aliases", **LOCAL)
def promote_version(config: SluiceConfig, version: str, evidence: dict) -> list[tuple[str, str | None, str | None]]:
    """@champion → version, the old champion → @previous; each move recorded."""
    reconcile_ledger.fn(config)
    client = _client(tracking_target(config.tracking))
    moves = alias_moves(alias_version(config, CHAMPION), version, current_previous=alias_version(config, PREVIOUS))
    for alias, from_version, to_version in moves:
        _set_alias(client, config.registry.model_name, alias, to_version)
        _record(config, alias, from_version, to_version, "promote", evidence)
    return moves


@task(name="roll-back", **LOCAL)
def roll_back(config: SluiceConfig, reason: str) -> list[tuple[str, str | None, str | None]]:
    """@champion back to @previous (see ``rollback_moves``); each move recorded."""
    reconcile_ledger.fn(config)
    client = _client(tracking_target(config.tracking))
    moves = rollback_moves(alias_version(config, CHAMPION), alias_version(config, PREVIOUS))
    for alias, from_version, to_version in moves:
        _set_alias(client, config.registry.model_name, alias, to_version)
        _record(config, alias, from_version, to_version, "rollback", {"reason": reason, "at": time.time()})
    return moves
