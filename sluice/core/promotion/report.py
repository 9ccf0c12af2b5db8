"""The promotion's markdown report: candidate and reference side by side,
the decision and every reason; and the rollback's."""

from __future__ import annotations

import math

from pydantic import BaseModel

from sluice.core.evaluation.results import EvaluationReport
from sluice.core.promotion.aliases import AliasMove
from sluice.core.promotion.gate import Decision
from sluice.core.registry.client import ModelVersionRef


class PromotionResult(BaseModel):
    version: ModelVersionRef
    decision: Decision | None  # None: the version already was @champion, so nothing was decided again
    moves: list[AliasMove]

    def summary(self) -> str:
        if self.decision is None:
            return (f"version {self.version.version} is already @champion: nothing decided again, its recorded "
                    "decision and evidence stay as they were")
        return self.decision.summary()


def already_champion(champion: str | None, version: str) -> bool:
    """An unchanged rerun: the candidate is the serving champion. Deciding again would compare it with itself,
    and recording that would replace the evidence it was promoted on."""
    return champion is not None and champion == version


def _number(value: float | None) -> str:
    return "not measured" if value is None or math.isnan(value) else f"{value:.3f}"


def alias_move_lines(moves: list[AliasMove]) -> list[str]:
    return [f"- @{alias}: {old or '—'} → {new or '—'}" for alias, old, new in moves]


def promotion_report(result: PromotionResult, report: EvaluationReport, confidence: float) -> str:
    version, decision, moves = result.version, result.decision, result.moves
    if decision is None:
        return (f"# {version.name} version {version.version}: already @champion\n\n"
                f"- eval data: `{report.eval_data.uri}`\n\n{result.summary()}\n")
    reference = report.reference
    reference_label = (f"champion (version {report.champion.version})" if report.champion
                       else "base model (no champion yet)")
    verdict = {"promote": "PROMOTED" if decision.promote else "would be promoted (dry-run)",
               "reject": "REJECTED"}[decision.outcome]
    lines = [f"# {version.name} version {version.version}: {verdict}", "",
             f"- eval data: `{report.eval_data.uri}` ({report.candidate.samples} samples)",
             f"- candidate evaluation run `{report.candidate.run_id}`"
             + (f"; {reference_label} evaluation run `{reference.run_id}`" if reference else ""), "",
             f"| metric | candidate | {reference_label} | difference ({confidence:.0%} CI) |",
             "|---|---|---|---|"]
    for metric, value in sorted(report.candidate.metrics.items()):
        comparison = report.comparisons.get(metric)
        ci = (f"{comparison.mean_difference:+.3f} [{comparison.low:+.3f}, {comparison.high:+.3f}]"
              if comparison and not math.isnan(comparison.mean_difference) else "—")
        lines.append(f"| {metric} | {_number(value)} | "
                     f"{_number(reference.metrics.get(metric)) if reference else '—'} | {ci} |")
    lines += ["", f"**Decision:** {decision.summary()}", ""]
    lines += [f"- {reason}" for reason in decision.reasons]
    if moves:
        lines += ["", "Alias moves:", *alias_move_lines(moves)]
    return "\n".join(lines) + "\n"


def rollback_report(model_name: str, reason: str, moves: list[AliasMove]) -> str:
    lines = [f"# Rollback of `{model_name}`", "", f"reason: {reason}", "", *alias_move_lines(moves)]
    return "\n".join(lines) + "\n"
