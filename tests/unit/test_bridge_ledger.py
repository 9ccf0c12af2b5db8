"""The event bridge's ledger on its own (a real sqlite file, no Prefect, no lakeFS): a claim
is granted once, an emitted event is never claimed again, a crashed claim is taken over only
once it expired, a released claim can be retried, and watermarks are kept per repository.
Found unchecked by mutation testing (tools/mutation.py, scope "ledger")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluice.shell import bridge_ledger
from sluice.shell.bridge_ledger import EmittedLedger
from sluice.shell.event_bridge import BridgeEvent

EXPIRY = 120.0  # bridge_ledger._CLAIM_EXPIRES_SECONDS


class Clock:
    """The ledger's clock, moved by hand (the ledger reads ``time.time()``)."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(bridge_ledger, "time", clock)
    return clock


def _event(commit_id: str = "c1", branch: str = "main") -> BridgeEvent:
    return BridgeEvent(id=uuid.uuid5(uuid.NAMESPACE_URL, f"repo/{branch}/{commit_id}"), event="lakefs.merge.main",
                       occurred=datetime(2026, 1, 1, tzinfo=UTC), repository="repo", branch=branch, commit_id=commit_id)


def test_a_claim_is_granted_once_and_recorded_with_what_it_names(tmp_path: Path, clock: Clock) -> None:
    ledger, event = EmittedLedger(tmp_path / "emitted.db"), _event()
    assert ledger.claim(event, via="hook") is True
    assert ledger.claim(event, via="reconciler") is False  # being emitted by the hook
    assert ledger.emitted() == [{"event_id": str(event.id), "repository": "repo", "branch": "main",
                                 "event": "lakefs.merge.main", "commit_id": "c1", "via": "hook", "state": "claimed",
                                 "at": clock.now}]


def test_a_confirmed_event_is_never_claimed_again_even_long_after(tmp_path: Path, clock: Clock) -> None:
    ledger, event = EmittedLedger(tmp_path / "emitted.db"), _event()
    assert ledger.claim(event, via="hook")
    clock.now += 5
    ledger.confirm(event)
    assert [(e["state"], e["at"]) for e in ledger.emitted()] == [("emitted", clock.now)]
    clock.now += 10 * EXPIRY
    assert ledger.claim(event, via="reconciler") is False
    ledger.release(event)  # a late release of an emitted event must not forget it
    assert ledger.claim(event, via="reconciler") is False


@pytest.mark.parametrize(("age", "taken_over"), [(EXPIRY - 0.001, False), (EXPIRY, True), (EXPIRY + 60, True)])
def test_a_crashed_claim_is_taken_over_once_it_expired(tmp_path: Path, clock: Clock, age: float,
                                                      taken_over: bool) -> None:
    ledger, event = EmittedLedger(tmp_path / "emitted.db"), _event()
    assert ledger.claim(event, via="hook")  # and the process dies before confirm or release
    clock.now += age
    assert ledger.claim(event, via="reconciler") is taken_over
    assert [e["via"] for e in ledger.emitted()] == ["reconciler" if taken_over else "hook"]


def test_a_released_claim_can_be_claimed_again_at_once(tmp_path: Path, clock: Clock) -> None:
    ledger, event, other = EmittedLedger(tmp_path / "emitted.db"), _event(), _event("c2")
    assert ledger.claim(event, via="hook") and ledger.claim(other, via="hook")
    ledger.release(event)
    assert [e["commit_id"] for e in ledger.emitted()] == ["c2"]  # only the released one is forgotten
    assert ledger.claim(event, via="reconciler") is True


def test_the_ledger_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    event = _event()
    first = EmittedLedger(tmp_path / "emitted.db")
    assert first.claim(event, via="hook")
    first.confirm(event)
    first.set_watermark("repo", "main", "c1")
    again = EmittedLedger(tmp_path / "emitted.db")
    assert again.claim(event, via="reconciler") is False
    assert again.watermarks("repo") == {"main": "c1"}


def test_events_are_listed_oldest_first(tmp_path: Path, clock: Clock) -> None:
    ledger = EmittedLedger(tmp_path / "emitted.db")
    for commit in ("c3", "c1", "c2"):
        clock.now += 1
        assert ledger.claim(_event(commit), via="hook")
    assert [e["commit_id"] for e in ledger.emitted()] == ["c3", "c1", "c2"]


def test_watermarks_are_per_repository_and_the_latest_wins(tmp_path: Path) -> None:
    ledger = EmittedLedger(tmp_path / "emitted.db")
    assert ledger.watermarks("repo") == {}
    ledger.set_watermark("repo", "main", "c1")
    ledger.set_watermark("repo", "main", "c2")
    ledger.set_watermark("repo", "dev", "d1")
    ledger.set_watermark("other", "main", "o1")
    assert ledger.watermarks("repo") == {"main": "c2", "dev": "d1"}
    assert ledger.watermarks("other") == {"main": "o1"}


def test_only_a_confirmed_event_counts_as_emitted(tmp_path: Path, clock: Clock) -> None:
    ledger, event = EmittedLedger(tmp_path / "emitted.db"), _event()
    assert ledger.is_emitted(event) is False  # never seen
    assert ledger.claim(event, via="hook")
    assert ledger.is_emitted(event) is False  # a claim alone is not an emit
    ledger.confirm(event)
    assert ledger.is_emitted(event) is True
    assert ledger.is_emitted(_event("c2")) is False  # another event
