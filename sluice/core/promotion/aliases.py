"""Which registry aliases a promotion, a rollback or a canary moves, and moving them.

:func:`alias_moves`, :func:`rollback_moves`, :func:`challenger_moves` and
:func:`withdrawal_moves` are plain functions (tested by table);
:func:`apply_promotion` and :func:`apply_rollback` apply their moves in the
order given, each recorded in the ledger (a canary's, in
:mod:`sluice.core.promotion.rollout`).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from sluice.core.errors import ExplainedError
from sluice.core.lineage import FlowRun, LedgerAction
from sluice.core.registry.client import CHALLENGER, CHAMPION, PREVIOUS, ModelRegistry
from sluice.core.registry.ledger import reconcile_ledger, record_move

log = logging.getLogger(__name__)
Logger = logging.Logger | logging.LoggerAdapter


class AliasMove(NamedTuple):
    """Point ``alias`` at ``to_version`` (None: delete the alias); it was on ``from_version``."""

    alias: str
    from_version: str | None
    to_version: str | None


class RollbackError(ExplainedError, RuntimeError):
    """A rollback that cannot be done as asked; the message says what to do."""


def alias_moves(
    current_champion: str | None, candidate_version: str, *, current_previous: str | None = None
) -> list[AliasMove]:
    """The alias moves that make ``candidate_version`` the champion.

    The old champion (if any, and not the candidate) becomes @previous, so a
    rollback has somewhere to go. Promoting the current champion again moves
    nothing, so a rerun of a promotion is harmless.

    Order matters: @previous moves first. If the process dies between the two
    moves, @champion is still the old version and a rerun computes the same
    moves; the other order would leave @champion moved, and a rerun would see
    "already champion" and never fix @previous. ``current_previous`` only fills
    in ``from_version`` (and skips a @previous move that is already done).
    """
    if not candidate_version:
        raise ValueError("candidate_version is empty: only a registered model version can be promoted")
    if current_champion == candidate_version:
        return []
    moves = []
    if current_champion is not None and current_previous != current_champion:
        moves.append(AliasMove(PREVIOUS, current_previous, current_champion))
    moves.append(AliasMove(CHAMPION, current_champion, candidate_version))
    return moves


def rollback_moves(champion: str | None, previous: str | None) -> list[AliasMove]:
    """The alias moves that put @previous back as @champion.

    After a rollback @champion is the old @previous and @previous is removed
    (``to_version`` None). It is not pointed at the rolled-back version: a
    second rollback would then silently swap the bad version back into serving.
    Instead a second rollback without a new promotion is an error, and the
    operator picks a version by hand. The rolled-back version stays in the
    registry, findable in the run that rolled it back.

    @champion moves first: if the process dies in between, @champion is already
    safe, and both aliases name the same version (which a rerun reports).
    """
    if champion is None:
        raise RollbackError("no @champion to roll back: nothing is being served from the registry")
    if previous is None:
        raise RollbackError(
            "no @previous version to roll back to (there was one promotion only, or a rollback already "
            "used it); set @champion to a chosen version by hand"
        )
    if previous == champion:
        raise RollbackError(
            f"@champion and @previous are both version {champion}: nothing different to roll back to "
            "(an interrupted promotion or rollback); set @champion to a chosen version by hand"
        )
    return [AliasMove(CHAMPION, champion, previous), AliasMove(PREVIOUS, previous, None)]


def challenger_moves(current_challenger: str | None, champion: str | None, candidate_version: str) -> list[AliasMove]:
    """The move that puts ``candidate_version`` on trial as @challenger (replacing one on trial already).
    Nothing when it already is @challenger (a rerun); an error when it is @champion (nothing to try)."""
    if not candidate_version:
        raise ValueError("candidate_version is empty: only a registered model version can be a challenger")
    if champion == candidate_version:
        raise ValueError(f"version {candidate_version} is @champion already: it cannot be its own challenger")
    if current_challenger == candidate_version:
        return []
    return [AliasMove(CHALLENGER, current_challenger, candidate_version)]


def withdrawal_moves(current_challenger: str | None, version: str) -> list[AliasMove]:
    """The move that takes ``version`` off trial: @challenger deleted. Nothing when @challenger names
    another version or none (it was withdrawn or replaced meanwhile: that version is not touched)."""
    if current_challenger != version:
        return []
    return [AliasMove(CHALLENGER, version, None)]


def apply_moves(registry: ModelRegistry, moves: list[AliasMove], action: LedgerAction, evidence: dict[str, Any],
                flow_run: FlowRun) -> list[AliasMove]:
    for move in moves:
        registry.set_alias(move.alias, move.to_version)
        record_move(registry, move.alias, move.from_version, move.to_version, action, evidence, flow_run)
    return moves


def repair_ledger(registry: ModelRegistry, flow_run: FlowRun, logger: Logger) -> None:
    """Record what an interrupted move left unrecorded, before moving anything."""
    repaired = reconcile_ledger(registry, flow_run)
    if repaired:
        logger.warning("ledger repaired: %s", "; ".join(repaired))


def apply_promotion(registry: ModelRegistry, version: str, evidence: dict[str, Any], flow_run: FlowRun,
                    logger: Logger = log) -> list[AliasMove]:
    """@champion → ``version``, the old champion → @previous; each move recorded (after repairing the ledger)."""
    repair_ledger(registry, flow_run, logger)
    moves = alias_moves(registry.alias_version(CHAMPION), version, current_previous=registry.alias_version(PREVIOUS))
    return apply_moves(registry, moves, "promote", evidence, flow_run)


def apply_rollback(registry: ModelRegistry, reason: str, flow_run: FlowRun, logger: Logger = log) -> list[AliasMove]:
    """@champion back to @previous (see :func:`rollback_moves`); each move recorded."""
    import time

    repair_ledger(registry, flow_run, logger)
    moves = rollback_moves(registry.alias_version(CHAMPION), registry.alias_version(PREVIOUS))
    return apply_moves(registry, moves, "rollback", {"reason": reason, "at": time.time()}, flow_run)
