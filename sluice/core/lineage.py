"""Lineage: the keys that tie a lakeFS commit, an MLflow run, a model version
and a Prefect flow run together, and the one place their tags are built.

Everything a run produced can be traced both ways. The data commit (the
lakeFS commit a model was trained and evaluated on) is tagged under
:data:`DATA_COMMIT` on the training run, the evaluation runs and the model
version; ingest commits carry the flow run that made them, and every MLflow
run and model version carries the flow run too. The builders take plain
values, so any stage can use them without importing another.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from sluice.core.project import PROJECT_ROOT

# where the data is
REPOSITORY = "lakefs.repository"
DATA_COMMIT = "lakefs.commit"  # the data commit: what a model was trained and evaluated on
DATA_URI = "lakefs.uri"  # lakefs://<repository>/<data commit>/<published folder>
# who ran it
FLOW_RUN_ID = "prefect.flow_run_id"
FLOW_RUN_NAME = "prefect.flow_run_name"
GIT_SHA = "mlflow.source.git.commit"  # MLflow's own key: its UI shows it
RUN_NAME = "mlflow.runName"
# ingest batches (lakeFS commit metadata)
KIND = "sluice.kind"
BATCH = "sluice.batch"
SOURCE = "sluice.source"
CONTRACT_VERSION = "sluice.contract_version"
BASE_COMMIT = "sluice.base_commit"  # main's commit when the batch began
DECISION = "sluice.decision"  # a batch's or a model version's verdict
ROWS_IN = "sluice.rows_in"
ROWS_PUBLISHED = "sluice.rows_published"
ROWS_QUARANTINED = "sluice.rows_quarantined"
# training and evaluation runs, model versions
TRAINING_KEY = "sluice.training_key"
CONFIG_HASH = "sluice.config_hash"
TRAINING_RUN = "sluice.training_run"
EVALUATION_RUN = "sluice.evaluation_run"
STAGE = "sluice.stage"
EVALUATED = "sluice.evaluated"  # the role of the evaluated model: candidate, champion, base model
MODEL_IDENTITY = "sluice.model_identity"
MODEL_VERSION = "sluice.model_version"
DECISION_REASONS = "sluice.decision_reasons"
# a canary (promotion.rollout canary), on the @challenger version: serving reads the share, watch-canary the rest
CANARY_SHARE = "sluice.canary.share"  # 0..1: the share of the default model's requests it answers
CANARY_STARTED = "sluice.canary.started"  # ISO time it became @challenger: the watched window starts there
CANARY_VERDICT = "sluice.canary.verdict"  # promote | withdraw
CANARY_EVIDENCE = "sluice.canary.evidence"  # the verdict's reasons, with their numbers
# the prompts a model version was evaluated with and is served with (sluice.core.registry.prompts):
# prompts:/<name>/<version> in MLflow's prompt registry, and a digest of their texts (a changed prompt, a new version)
PROMPT_TAG_PREFIX = "sluice.prompt."  # + system | template | training_system
PROMPTS_DIGEST = "sluice.prompts_digest"
# the alias ledger (one MLflow run per alias move)
LEDGER_MODEL = "ledger.model"
LEDGER_ALIAS = "ledger.alias"
LEDGER_FROM = "ledger.from"
LEDGER_TO = "ledger.to"
LEDGER_ACTION = "ledger.action"
LEDGER_AT = "ledger.at"
LEDGER_FLOW_RUN = "ledger.flow_run"
LEDGER_SUMMARY = "ledger.summary"  # one line of evidence, shown by `sluice registry history`

BatchDecision = Literal["publish", "publish_with_quarantine", "reject", "nothing_new", "unreadable"]
# canary: a gated version became @challenger; withdraw: the canary found it worse and @challenger was removed
LedgerAction = Literal["promote", "rollback", "reconcile", "canary", "shadow", "withdraw"]


class FlowRun(BaseModel):
    """The Prefect flow run doing the work (``local`` outside one)."""

    id: str = "local"
    name: str = ""


def _present(tags: dict[str, str | None]) -> dict[str, str]:
    """MLflow rejects empty tag values: leave unknown ones out."""
    return {key: value for key, value in tags.items() if value}


def batch_commit_metadata(flow_run: FlowRun, *, kind: str, batch_id: str, source: str, contract_version: str,
                          base_commit: str) -> dict[str, str]:
    """Metadata on every commit of an ingest batch's branch."""
    return {FLOW_RUN_ID: flow_run.id, FLOW_RUN_NAME: flow_run.name, KIND: kind, BATCH: batch_id, SOURCE: source,
            CONTRACT_VERSION: contract_version, BASE_COMMIT: base_commit}


def batch_verdict_metadata(lineage: dict[str, str], decision: BatchDecision, *, rows_in: int = 0,
                           rows_published: int = 0, rows_quarantined: int = 0) -> dict[str, str]:
    """The batch's lineage plus its verdict, for the audit commit and the merge into main."""
    return {**lineage, DECISION: decision, ROWS_IN: str(rows_in), ROWS_PUBLISHED: str(rows_published),
            ROWS_QUARANTINED: str(rows_quarantined)}


def training_run_tags(flow_run: FlowRun, *, key: str, repository: str, data_commit: str, data_uri: str, kind: str,
                      config_hash: str, run_name: str) -> dict[str, str]:
    return _present({TRAINING_KEY: key, REPOSITORY: repository, DATA_COMMIT: data_commit, DATA_URI: data_uri,
                     KIND: kind, FLOW_RUN_ID: flow_run.id, FLOW_RUN_NAME: flow_run.name, CONFIG_HASH: config_hash,
                     GIT_SHA: git_sha(), RUN_NAME: run_name})


def evaluation_run_tags(flow_run: FlowRun, *, role: str, model_identity: str, repository: str, data_commit: str,
                        data_uri: str, model_version: str | None, training_run: str | None) -> dict[str, str]:
    return _present({STAGE: "evaluation", EVALUATED: role, MODEL_IDENTITY: model_identity, REPOSITORY: repository,
                     DATA_COMMIT: data_commit, DATA_URI: data_uri, FLOW_RUN_ID: flow_run.id,
                     RUN_NAME: f"eval-{role.replace(' ', '-')}-{data_commit[:8]}", MODEL_VERSION: model_version,
                     TRAINING_RUN: training_run})


def model_version_tags(flow_run: FlowRun, *, repository: str, data_commit: str, training_run: str,
                       evaluation_run: str, config_hash: str, training_key: str) -> dict[str, str]:
    return _present({DATA_COMMIT: data_commit, REPOSITORY: repository, TRAINING_RUN: training_run,
                     EVALUATION_RUN: evaluation_run, FLOW_RUN_ID: flow_run.id, CONFIG_HASH: config_hash,
                     TRAINING_KEY: training_key, GIT_SHA: git_sha()})


def ledger_tags(flow_run: FlowRun, *, model: str, alias: str, from_version: str | None, to_version: str | None,
                action: LedgerAction, at: datetime) -> dict[str, str]:
    """Every key is written, empty ones too: the ledger reads them back."""
    return {LEDGER_MODEL: model, LEDGER_ALIAS: alias, LEDGER_FROM: from_version or "", LEDGER_TO: to_version or "",
            LEDGER_ACTION: action, LEDGER_AT: at.isoformat(),
            LEDGER_FLOW_RUN: flow_run.id if flow_run.id != "local" else "outside a flow run",
            RUN_NAME: f"{alias}: {from_version or '—'} → {to_version or '—'}"}


def git_sha() -> str:
    """The project's git commit, or "" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=PROJECT_ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""
