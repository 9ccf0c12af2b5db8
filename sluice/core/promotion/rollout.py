"""A canary in the registry: putting a version on trial, reading where a trial stands, and ending it.

All of a canary's state is in the registry, so a restarted server or watcher picks up where it was:

- the alias @challenger names the version on trial;
- its tags say since when (``sluice.canary.started``: the watched window starts there) and for which
  share of the default model's traffic (``sluice.canary.share``: serving reads it, so changing the tag
  changes the split without a restart);
- once decided, its tags keep the verdict and its reasons (``sluice.canary.verdict`` /
  ``sluice.canary.evidence``, and ``sluice.decision`` promoted or withdrawn);
- every alias move is in the ledger (actions ``canary``, ``promote``, ``withdraw``) with the evidence, its
  one-line summary shown by ``sluice registry history``.

Tags are written before the aliases move, so a version never serves without its evidence.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from sluice.core import lineage
from sluice.core.lineage import FlowRun
from sluice.core.promotion.aliases import (
    AliasMove,
    Logger,
    alias_moves,
    apply_moves,
    challenger_moves,
    repair_ledger,
    withdrawal_moves,
)
from sluice.core.promotion.canary import CanaryVerdict
from sluice.core.registry.client import CHALLENGER, CHAMPION, PREVIOUS, ModelRegistry

log = logging.getLogger(__name__)


class CanaryState(BaseModel):
    """Where a canary stands, as the registry says."""

    challenger: str | None  # the version on trial; None: no canary
    champion: str | None
    started: datetime | None  # None: the challenger carries no start (set by hand)
    share: float | None  # None: no share tag (serving sends it no split traffic)


def read_canary(registry: ModelRegistry) -> CanaryState:
    challenger, champion = registry.alias_version(CHALLENGER), registry.alias_version(CHAMPION)
    if challenger is None:
        return CanaryState(challenger=None, champion=champion, started=None, share=None)
    tags = registry.client.get_model_version(registry.model_name, challenger).tags
    started, share = tags.get(lineage.CANARY_STARTED), tags.get(lineage.CANARY_SHARE)
    return CanaryState(challenger=challenger, champion=champion,
                       started=datetime.fromisoformat(started) if started else None,
                       share=float(share) if share else None)


def canary_tags(share: float, started: datetime) -> dict[str, str]:
    return {lineage.CANARY_SHARE: f"{share:g}", lineage.CANARY_STARTED: started.isoformat()}


def start_canary(registry: ModelRegistry, version: str, share: float, evidence: dict[str, Any], flow_run: FlowRun,
                 logger: Logger = log, rollout: Literal["canary", "shadow"] = "canary") -> list[AliasMove]:
    """``version`` → @challenger, tagged with its share and start first; moved and recorded (action: the
    ``rollout``, canary or shadow: the share is then the sample mirrored to it, never answered by it).
    A rerun (it is @challenger already) moves nothing and keeps its start; a version its canary withdrew
    is not tried on live traffic again (a rerun of its pipeline): it keeps its verdict."""
    repair_ledger(registry, flow_run, logger)
    tags = registry.client.get_model_version(registry.model_name, version).tags
    if tags.get(lineage.CANARY_VERDICT) == "withdraw":
        logger.warning("version %s was withdrawn by its canary before: not put on trial again (its evidence is in "
                       "the tag %s)", version, lineage.CANARY_EVIDENCE)
        registry.tag(version, {lineage.DECISION: "withdrawn"})
        return []
    moves = challenger_moves(registry.alias_version(CHALLENGER), registry.alias_version(CHAMPION), version)
    if moves:
        registry.tag(version, {**canary_tags(share, datetime.now(UTC)), lineage.DECISION: "challenger"})
    summary = (f"version {version} on trial as @challenger in shadow: it also answers {share:.0%} of the default "
               "model's requests in the background, never returned" if rollout == "shadow" else
               f"version {version} on trial as @challenger for {share:.0%} of the default model's traffic")
    return apply_moves(registry, moves, rollout, {**evidence, "rollout": rollout, "summary": summary}, flow_run)


def adopt_challenger(registry: ModelRegistry, state: CanaryState, share: float) -> CanaryState:
    """A challenger set by hand carries no start or share: its window starts now, at the configured share.
    Tags a trial already has are kept (an operator may have changed the share)."""
    assert state.challenger is not None
    started = state.started or datetime.now(UTC)
    missing = {k: v for k, v in canary_tags(share, started).items()
               if (k == lineage.CANARY_SHARE and state.share is None)
               or (k == lineage.CANARY_STARTED and state.started is None)}
    if missing:
        registry.tag(state.challenger, missing)
    return state.model_copy(update={"started": started, "share": share if state.share is None else state.share})


def conclude_canary(registry: ModelRegistry, verdict: CanaryVerdict, evidence: dict[str, Any], flow_run: FlowRun,
                    logger: Logger = log) -> list[AliasMove]:
    """Act on a verdict: promote (@champion → challenger, the old one → @previous, @challenger removed;
    action promote) or withdraw (@challenger removed; action withdraw). Tags first, then the moves."""
    if verdict.outcome == "watch":
        return []
    version = verdict.challenger
    registry.tag(version, {lineage.CANARY_VERDICT: verdict.outcome, lineage.CANARY_EVIDENCE: "\n".join(verdict.reasons),
                           lineage.DECISION: "promoted" if verdict.outcome == "promote" else "withdrawn"})
    repair_ledger(registry, flow_run, logger)
    off_trial = withdrawal_moves(registry.alias_version(CHALLENGER), version)
    if verdict.outcome == "withdraw":
        return apply_moves(registry, off_trial, "withdraw", evidence, flow_run)
    moves = alias_moves(registry.alias_version(CHAMPION), version, current_previous=registry.alias_version(PREVIOUS))
    return apply_moves(registry, moves + off_trial, "promote", evidence, flow_run)


def finish_interrupted_promotion(registry: ModelRegistry, version: str, flow_run: FlowRun) -> list[AliasMove]:
    """@challenger still names the version that is @champion now (a promotion died before removing it):
    remove it, recorded as the end of that promotion."""
    evidence = {"summary": f"version {version} was promoted from @challenger already; @challenger removed (the "
                           "promotion was interrupted before it did that)"}
    return apply_moves(registry, withdrawal_moves(registry.alias_version(CHALLENGER), version), "promote", evidence,
                       flow_run)


def trial_evidence(verdict: CanaryVerdict, measured: BaseModel) -> dict[str, Any]:
    """What the ledger keeps with a trial's moves (canary or shadow): the verdict, its summary and the numbers
    it was made on."""
    return {"rollout": verdict.kind, "summary": verdict.summary(), "verdict": verdict.model_dump(mode="json"),
            "traffic": measured.model_dump(mode="json")}
