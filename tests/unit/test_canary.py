"""The canary, by table: its verdict on counted traffic, the alias moves it makes, the stable split of
requests, and counting a request log and feedback store (real files, no server, no Prefect)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluice.core.config.sections import CanaryConfig, PromotionConfig
from sluice.core.promotion.aliases import AliasMove, challenger_moves, withdrawal_moves
from sluice.core.promotion.canary import CanaryEvidence, SideTraffic, decide_canary
from sluice.core.promotion.canary_traffic import measure_canary
from sluice.serving.canary import alias_named, in_challenger_share
from sluice.serving.feedback import FeedbackStore

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _policy(**changes: object) -> CanaryConfig:
    """Bounds spelled out here, so the tests do not move with the defaults."""
    fields: dict[str, object] = {"share": 0.2, "window_seconds": 600, "min_requests": 100, "early_withdraw_after": 20,
                                 "max_error_rate_increase": 0.02, "max_p95_latency_ratio": 1.5,
                                 "min_rating_delta": -0.5, "min_ratings": 5, "max_empty_rate_increase": 0.05,
                                 "max_refusal_rate_increase": 0.05, "max_length_drift": 0.5}
    return CanaryConfig(**(fields | changes))


def _side(version: str, **counts: object) -> SideTraffic:
    fields: dict[str, object] = {"requests": 100, "errors": 0, "p95_latency_ms": 200.0, "empty": 0, "refusals": 0,
                                 "mean_completion_tokens": 20.0, "ratings": 0, "mean_rating": None}
    return SideTraffic(version=version, **(fields | counts))


def _evidence(seconds: float = 700, **challenger: object) -> CanaryEvidence:
    return CanaryEvidence(challenger=_side("3", **challenger), champion=_side("2", requests=400), started=START,
                          measured_at=START + timedelta(seconds=seconds))


def test_a_challenger_within_every_bound_is_promoted_once_due() -> None:
    verdict = decide_canary(_evidence(), _policy())
    assert verdict.outcome == "promote" and verdict.failed == [] and verdict.due
    assert len(verdict.reasons) == 8 and all(r.endswith(": ok") or "not compared" in r for r in verdict.reasons[1:])
    assert verdict.reasons[-1] == "LLM judge: no evaluation.judge.model configured: not compared"
    assert verdict.summary().startswith("promote version 3 (canary against champion version 2, 100 vs 400 requests")


@pytest.mark.parametrize(("counts", "broken"), [
    ({"errors": 3}, "server-error rate 3.0 % against 0.0 % for @champion: +3.0 points, more than the allowed +2.0"),
    ({"p95_latency_ms": 320.0}, "p95 latency 320 ms against 200 ms for @champion: 1.60x, more than the allowed 1.50x"),
    ({"empty": 6}, "empty answers 6.0 % against 0.0 % for @champion: +6.0 points, more than the allowed +5.0"),
    ({"refusals": 10}, "refusals 10.0 % against 0.0 % for @champion: +10.0 points"),
    ({"mean_completion_tokens": 31.0}, "answer length 31.0 tokens on average against 20.0 for @champion: drift 55 %"),
    ({"mean_completion_tokens": 9.0}, "drift 55 %, more than the allowed 50 %"),
    ({"errors": 100, "p95_latency_ms": None, "mean_completion_tokens": None},
     "p95 latency: not measured on @challenger (no answers)"),
])
def test_each_broken_bound_withdraws_the_challenger_and_says_so_with_its_numbers(counts, broken) -> None:
    verdict = decide_canary(_evidence(**counts), _policy())
    assert verdict.outcome == "withdraw"
    assert any(broken in sentence for sentence in verdict.failed), verdict.failed
    assert broken.split(":")[0] in verdict.summary()


def test_the_bounds_hold_at_their_edges() -> None:
    edges = {"errors": 2, "p95_latency_ms": 300.0, "mean_completion_tokens": 30.0}
    assert decide_canary(_evidence(**edges), _policy()).outcome == "promote"
    assert decide_canary(_evidence(empty=5, refusals=5, mean_completion_tokens=10.0), _policy()).outcome == "promote"


def test_the_rating_bound_applies_only_with_enough_ratings_on_both_sides() -> None:
    worse = {"ratings": 5, "mean_rating": 2.0}
    champion = _side("2", requests=400, ratings=5, mean_rating=4.0)
    evidence = _evidence(**worse).model_copy(update={"champion": champion})
    verdict = decide_canary(evidence, _policy())
    assert verdict.outcome == "withdraw"
    assert verdict.failed == ["feedback rating 2.00 (5) against 4.00 (5) for @champion: -2.00, below the allowed -0.50"]
    few = evidence.model_copy(update={"champion": champion.model_copy(update={"ratings": 4})})
    assert decide_canary(few, _policy()).outcome == "promote"  # too few ratings say nothing against it


def test_before_it_is_due_it_watches_unless_a_bound_is_broken_by_enough_requests() -> None:
    quiet = decide_canary(_evidence(seconds=60, requests=50), _policy())
    assert quiet.outcome == "watch" and not quiet.due and "no verdict yet" in quiet.summary()
    bad_but_few = decide_canary(_evidence(seconds=60, requests=10, empty=10), _policy())
    assert bad_but_few.outcome == "watch" and bad_but_few.failed
    bad = decide_canary(_evidence(seconds=60, requests=20, empty=20), _policy())
    assert bad.outcome == "withdraw" and "withdrawn early" in " ".join(bad.reasons)
    assert decide_canary(_evidence(seconds=60, requests=20, empty=20),
                         _policy(early_withdraw_after=None)).outcome == "watch"


def test_the_verdict_is_due_after_the_window_or_after_min_requests() -> None:
    assert decide_canary(_evidence(seconds=60, requests=100), _policy()).outcome == "promote"  # enough requests
    assert decide_canary(_evidence(seconds=600, requests=5), _policy()).outcome == "promote"  # the window is over
    assert decide_canary(_evidence(seconds=10**6, requests=99), _policy(window_seconds=None)).outcome == "watch"
    with pytest.raises(ValueError, match="would never be decided"):
        _policy(window_seconds=None, min_requests=None)


def test_no_traffic_on_either_side_is_never_a_pass() -> None:
    none_reached = decide_canary(_evidence(requests=0, p95_latency_ms=None, mean_completion_tokens=None), _policy())
    assert none_reached.outcome == "withdraw" and "no canary request reached @challenger" in none_reached.failed[0]
    evidence = _evidence().model_copy(update={"champion": _side("2", requests=0, p95_latency_ms=None,
                                                                 mean_completion_tokens=None)})
    verdict = decide_canary(evidence, _policy())
    assert verdict.outcome == "withdraw" and "not measured on @champion" in verdict.failed[0]


def test_rollout_is_direct_by_default_and_canary_settings_are_checked() -> None:
    assert PromotionConfig().rollout == "direct"
    assert PromotionConfig(rollout="canary", canary={"share": 0.25}).canary.share == 0.25
    with pytest.raises(ValueError, match="less than or equal to 1"):
        PromotionConfig(rollout="canary", canary={"share": 1.5})
    with pytest.raises(ValueError, match="rollout"):
        PromotionConfig(rollout="blue-green")  # shadow is one now (tests/serving/test_shadow_rollout.py)


def test_challenger_and_withdrawal_moves() -> None:
    assert challenger_moves(None, "2", "3") == [AliasMove("challenger", None, "3")]
    assert challenger_moves("3", "2", "4") == [AliasMove("challenger", "3", "4")]  # a newer candidate replaces it
    assert challenger_moves("3", "2", "3") == []  # a rerun
    with pytest.raises(ValueError, match="@champion already"):
        challenger_moves(None, "3", "3")
    assert withdrawal_moves("3", "3") == [AliasMove("challenger", "3", None)]
    assert withdrawal_moves("4", "3") == [] and withdrawal_moves(None, "3") == []  # replaced or gone meanwhile


def test_the_split_is_stable_per_key_close_to_the_share_and_salted_by_the_version() -> None:
    keys = [f"user-{i}" for i in range(20_000)]
    chosen = [k for k in keys if in_challenger_share(k, 0.2, "3")]
    assert abs(len(chosen) / len(keys) - 0.2) < 0.01
    assert chosen == [k for k in keys if in_challenger_share(k, 0.2, "3")]  # the same keys every time
    assert set(chosen) <= {k for k in keys if in_challenger_share(k, 0.5, "3")}  # a larger share keeps its users
    other = {k for k in keys if in_challenger_share(k, 0.2, "4")}
    assert len(other & set(chosen)) < 0.3 * len(chosen)  # another trial draws other users
    assert not any(in_challenger_share(k, 0.0, "3") for k in keys[:1000])
    assert all(in_challenger_share(k, 1.0, "3") for k in keys[:1000])


def test_alias_named() -> None:
    assert alias_named("m", "m", "champion") == "champion"
    assert alias_named("m@challenger", "m", "champion") == "challenger"
    assert alias_named("models:/m@champion", "m", "champion") == "champion"
    assert alias_named("m/3", "m", "champion") is None and alias_named("sql-helper", "m", "champion") is None


def _log(path: Path, rows: list[dict]) -> None:
    with path.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def _row(i: int, alias: str, version: str, *, status: int = 200, completion: str = "The keeper is Wren.",
         tokens: int = 5, latency: float = 100.0, canary: bool = True, at: datetime | None = None) -> dict:
    row = {"id": f"chatcmpl-{alias}-{i}" if status == 200 else None, "time": (at or START).isoformat(),
           "status": status, "model": "m", "model_version": version, "alias": alias, "canary": canary,
           "latency_ms": latency}
    return row | ({"completion": completion, "completion_tokens": tokens} if status == 200 else {"error": {}})


def test_the_log_and_feedback_store_are_counted_per_side(tmp_path: Path) -> None:
    log, later = tmp_path / "requests.jsonl", START + timedelta(seconds=5)
    rows = [_row(i, "challenger", "3", at=later, latency=100.0 + i) for i in range(18)]
    rows += [_row(18, "challenger", "3", at=later, completion=""), _row(19, "challenger", "3", at=later, status=500)]
    rows += [_row(20, "challenger", "3", at=later, status=400)]  # a client error: not the model's
    rows += [_row(21, "challenger", "3", at=later, completion="I'm sorry, but I cannot help with that.")]
    rows += [_row(i, "champion", "2", at=later, tokens=10) for i in range(30)]
    rows += [_row(99, "champion", "2", at=START - timedelta(seconds=1))]  # before the trial
    rows += [_row(98, "champion", "1", at=later), _row(97, "champion", "2", at=later, canary=False)]  # not compared
    _log(log, rows)
    store = FeedbackStore(tmp_path / "feedback.db")
    for rid, ratings in (("chatcmpl-challenger-0", [1, 4]), ("chatcmpl-champion-0", [5]), ("chatcmpl-champion-1", [3])):
        store.record_response(rid, endpoint="chat", model_version="x", prompt="p", completion="c", finish_reason="stop")
        for rating in ratings:
            store.add_feedback(rid, rating)
    store.close()
    with log.open("a") as handle:
        handle.write('{"canary": true, "time": "2026-')  # the line being written now: not read yet
    evidence = measure_canary(log, tmp_path / "feedback.db", challenger="3", champion="2", started=START,
                              now=START + timedelta(seconds=60))
    challenger, champion = evidence.challenger, evidence.champion
    assert (challenger.requests, challenger.errors, challenger.empty, challenger.refusals) == (21, 1, 1, 1)
    # 20 answers: 100 ms three times, then 101 … 117 ms; the nearest-rank p95 is the 19th
    assert challenger.p95_latency_ms == 116.0 and challenger.mean_completion_tokens == 5.0
    assert (challenger.ratings, challenger.mean_rating) == (1, 4.0)  # the latest rating counts
    assert (champion.requests, champion.ratings, champion.mean_rating, champion.mean_completion_tokens) == \
        (30, 2, 4.0, 10.0)
    assert evidence.elapsed_seconds == 60
    verdict = decide_canary(evidence, _policy(min_requests=10, max_empty_rate_increase=0.01,
                                              max_refusal_rate_increase=0.01, max_length_drift=0.4))
    assert verdict.outcome == "withdraw" and len(verdict.failed) == 4  # errors, empty, refusals, length
    nothing = measure_canary(tmp_path / "none.jsonl", tmp_path / "none.db", challenger="3", champion="2",
                             started=START)
    assert nothing.challenger.requests == 0 and nothing.champion.requests == 0


def test_a_canary_rollout_serves_the_challenger_without_being_told() -> None:
    from sluice.core.config import SluiceConfig
    from sluice.serving.app import served_aliases

    assert served_aliases(SluiceConfig()) == []
    assert served_aliases(SluiceConfig.model_validate({"promotion": {"rollout": "canary"}})) == ["challenger"]
    assert served_aliases(SluiceConfig.model_validate({"promotion": {"rollout": "shadow"}})) == ["challenger"]
    both = SluiceConfig.model_validate({"promotion": {"rollout": "canary"},
                                        "serving": {"extra_aliases": ["challenger", "staging"]}})
    assert served_aliases(both) == ["challenger", "staging"]
