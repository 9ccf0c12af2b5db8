"""decide_shadow, the plain function behind the shadow rollout's verdict: each bound from the config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sluice.core.config.sections import ShadowConfig
from sluice.core.promotion.shadow import ShadowEvidence, decide_shadow

START = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = ShadowConfig(window_seconds=3600, min_requests=10, early_withdraw_after=5, min_mean_similarity=0.8,
                      max_empty_rate_increase=0.1, max_error_rate_increase=0.1)


def evidence(compared: int, *, errors: int = 0, empty: int = 0, similarity: float | None = 0.9,
             seconds: float = 60) -> ShadowEvidence:
    return ShadowEvidence(challenger="2", champion="1", started=START, measured_at=START + timedelta(seconds=seconds),
                          mirrored=compared + errors, errors=errors, compared=compared, challenger_empty=empty,
                          mean_similarity=similarity if compared else None)


def test_each_bound_withdraws_once_due_and_a_clean_shadow_is_promoted() -> None:
    assert decide_shadow(evidence(10), POLICY).outcome == "promote"
    assert decide_shadow(evidence(4), POLICY).outcome == "watch"  # too few, nothing broken
    assert decide_shadow(evidence(4, seconds=3600), POLICY).outcome == "promote"  # the window is over
    for broken, words in ((evidence(10, similarity=0.5), "semantic similarity"),
                          (evidence(10, empty=2), "empty answers 20.0 %"),
                          (evidence(10, errors=2), "failed shadow generations 16.7 %"),
                          (evidence(0, seconds=3600), "no shadow answer")):
        verdict = decide_shadow(broken, POLICY)
        assert verdict.outcome == "withdraw" and any(words in f for f in verdict.failed), verdict.failed


def test_a_broken_bound_withdraws_early_and_the_summary_names_the_shadow() -> None:
    verdict = decide_shadow(evidence(3, errors=2, similarity=0.95), POLICY)  # 5 mirrored: early_withdraw_after
    assert verdict.outcome == "withdraw" and not verdict.due
    assert "failed shadow generations 40.0 %" in verdict.failed[0]
    assert verdict.summary().startswith("withdraw version 2 (shadow against champion version 1, 3 of 5 shadowed")
