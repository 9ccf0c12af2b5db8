"""The event bridge against real parts: the embedded lakeFS (driven by the
SDK, calling the bridge through the shipped action file), the bridge over
HTTP, and a real Prefect API whose events are read back."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import lakefs
import pytest

from sluice.core.config import BridgeConfig
from sluice.shell import bridge_ledger
from sluice.shell.event_bridge import (
    TOKEN_HEADER,
    Bridge,
    BridgeEvent,
    EmittedLedger,
    PrefectEventSink,
    PrefectUnavailable,
    WebhookError,
    create_app,
    event_from_commit,
    event_from_webhook,
    install_action,
)
from tests.conftest import BRIDGE_TOKEN, REPO_ROOT, unique_name

MERGE_BODY = {"event_type": "post-merge", "event_time": "2026-11-21T01:40:00Z", "action_name": "a",
              "hook_id": "h", "repository_id": "demo", "branch_id": "main", "source_ref": "c0ffee",
              "commit_id": "c0ffee", "commit_message": "Merge", "committer": "admin",
              "commit_metadata": {"sluice.kind": "sft"}}


def test_a_merge_webhook_becomes_a_merge_event_on_the_branch_resource():
    event = event_from_webhook(MERGE_BODY)
    assert event is not None and event.event == "lakefs.merge.completed"
    prefect_event = event.to_prefect()
    assert prefect_event["resource"]["prefect.resource.id"] == "lakefs.repo.demo.branch.main"
    assert prefect_event["resource"]["lakefs.branch"] == "main"
    assert prefect_event["payload"]["commit_id"] == "c0ffee"
    assert prefect_event["payload"]["metadata"] == {"sluice.kind": "sft"}
    assert event.occurred == datetime(2026, 11, 21, 1, 40, tzinfo=UTC)


def test_event_ids_depend_only_on_repository_branch_event_and_commit():
    first, again = event_from_webhook(MERGE_BODY), event_from_webhook({**MERGE_BODY, "hook_id": "other"})
    other = event_from_webhook({**MERGE_BODY, "commit_id": "beef"})
    assert first and again and other
    assert first.id == again.id != other.id
    found_in_log = lakefs.models.Commit(id="c0ffee", parents=["a", "b"], committer="admin", message="Merge",
                                        creation_date=0, meta_range_id="", metadata={})
    assert event_from_commit("demo", "main", found_in_log).id == first.id


@pytest.mark.parametrize(("change", "field"), [({"commit_id": None}, "commit_id"), ({"branch_id": ""}, "branch_id"),
                                               ({"event_type": 3}, "event_type"),
                                               ({"commit_metadata": [1]}, "commit_metadata")])
def test_a_malformed_webhook_body_names_its_field(change, field):
    with pytest.raises(WebhookError, match=field):
        event_from_webhook({**MERGE_BODY, **change})


def test_pre_hooks_are_not_forwarded():
    assert event_from_webhook({**MERGE_BODY, "event_type": "pre-merge"}) is None


# ------------------------------------------------------------------ with real services


class BackgroundServer:
    """The bridge's app served by uvicorn on a thread, on a socket bound before it starts (no port race)."""

    def __init__(self, app):  # type: ignore[no-untyped-def]
        import uvicorn

        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, f"the bridge on {self.url} did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _stored_events(commit_id: str, name: str) -> list:
    """The events Prefect has stored for a commit, now."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    since = datetime.now(UTC) - timedelta(days=3650)
    with get_client(sync_client=True) as client:
        page = client.read_events(filter=EventFilter(event=EventNameFilter(name=[name]),
                                                     occurred=EventOccurredFilter(since=since)), limit=50)
    return [e for e in page.events if e.payload.get("commit_id") == commit_id]


def _wait_for_events(commit_id: str, name: str, timeout: float = 20.0) -> list:
    """The stored events for a commit once there is one (the persister writes a moment after they arrive)."""
    deadline = time.monotonic() + timeout
    while not (found := _stored_events(commit_id, name)):
        assert time.monotonic() < deadline, f"Prefect stored no {name} event for commit {commit_id} in {timeout} s"
        time.sleep(0.1)
    return found


def _all_sent_events_stored() -> None:
    """Return once Prefect has stored every event sent to it before this call: a sentinel sent now
    is persisted after them (one queue, flushed in order), so absence can be checked after it."""
    sentinel = event_from_webhook({**MERGE_BODY, "event_type": "post-sentinel", "repository_id": "sentinel",
                                   "commit_id": unique_name("sentinel")})  # its own name: not among the merges
    assert sentinel is not None
    PrefectEventSink().emit([sentinel])
    _wait_for_events(sentinel.commit_id, sentinel.event)


@pytest.fixture
def bridge_setup(prefect_harness, lakefs_env, lakefs_client, tmp_path):  # type: ignore[no-untyped-def]
    name = unique_name("bridge")
    repo = lakefs.Repository(name, client=lakefs_client).create(storage_namespace=f"local://{name}")
    ledger = EmittedLedger(tmp_path / "emitted.db")
    bridge = Bridge(BridgeConfig(state_file=tmp_path / "emitted.db"), BRIDGE_TOKEN, PrefectEventSink(), ledger,
                    repository=name)
    with BackgroundServer(create_app(bridge)) as server:
        yield repo, bridge, server


def _merge_new_data(repo, lakefs_client, text: str = "x") -> str:  # type: ignore[no-untyped-def]
    branch = repo.branch(unique_name("incoming")).create(source_reference="main")
    branch.object("sft/new.jsonl").upload(text.encode())
    branch.commit(message="new data")
    return str(branch.merge_into(repo.branch("main")))


def test_a_merge_reaches_prefect_once_through_the_action_and_duplicates_emit_nothing(bridge_setup, lakefs_client):
    repo, bridge, server = bridge_setup
    assert install_action(lakefs_client, repo.id, server.url) is not None
    assert install_action(lakefs_client, repo.id, server.url) is None  # already there: no second commit
    merge_commit = _merge_new_data(repo, lakefs_client)

    # lakeFS runs post-hooks in the background: wait until both ran (the bridge answered them)
    runs = _finished_action_runs(lakefs_client, repo.id, count=2)
    assert sorted((r.event_type, r.status) for r in runs) == [("post-commit", "completed"),
                                                              ("post-merge", "completed")]
    events = _wait_for_events(merge_commit, "lakefs.merge.completed")
    assert events[0].resource.id == f"lakefs.repo.{repo.id}.branch.main"
    emitted = {(e["event"], e["branch"], e["commit_id"], e["via"]) for e in bridge.ledger.emitted()}
    assert ("lakefs.merge.completed", "main", merge_commit, "webhook") in emitted
    # the commit on the incoming-* branch before the merge was announced too (post-commit)
    assert {(event, via) for event, branch, _, via in emitted if branch.startswith("incoming-")} == {
        ("lakefs.commit.completed", "webhook")}
    assert len(emitted) == 2 and bridge.counts["emitted"] == 2

    # lakeFS retrying the hook, and the reconciler finding the commit: neither emits again
    body = {**MERGE_BODY, "repository_id": repo.id, "commit_id": merge_commit, "source_ref": merge_commit}
    again = httpx.post(f"{server.url}/lakefs", json=body, headers={TOKEN_HEADER: BRIDGE_TOKEN})
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    bridge.reconcile_once(lakefs_client)  # first pass: records where branches stand
    assert bridge.reconcile_once(lakefs_client) == []
    assert bridge.counts["emitted"] == 2 and bridge.counts["duplicates"] == 1
    _all_sent_events_stored()
    assert len(_stored_events(merge_commit, "lakefs.merge.completed")) == 1


def _finished_action_runs(lakefs_client, repository: str, count: int) -> list:  # type: ignore[no-untyped-def]
    """The repository's action runs once ``count`` of them finished (lakeFS records a run when it ends)."""
    deadline = time.monotonic() + 30
    while len(runs := lakefs_client.sdk_client.actions_api.list_repository_runs(repository).results) < count:
        assert time.monotonic() < deadline, f"only {len(runs)} of {count} action runs finished in 30 s: {runs}"
        time.sleep(0.1)
    return runs


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_a_missing_or_wrong_secret_is_401_and_emits_nothing(bridge_setup, token):
    repo, bridge, server = bridge_setup
    body = {**MERGE_BODY, "repository_id": repo.id, "commit_id": f"never-{token}"}
    headers = {TOKEN_HEADER: token} if token else {}
    answer = httpx.post(f"{server.url}/lakefs", json=body, headers=headers)
    assert answer.status_code == 401 and TOKEN_HEADER in answer.json()["error"]
    assert bridge.ledger.emitted() == [] and bridge.counts["unauthorized"] == 1


def test_a_bad_body_is_400_naming_the_field(bridge_setup):
    _, bridge, server = bridge_setup
    answer = httpx.post(f"{server.url}/lakefs", json={**MERGE_BODY, "commit_id": ""},
                        headers={TOKEN_HEADER: BRIDGE_TOKEN})
    assert answer.status_code == 400 and "commit_id" in answer.json()["error"]
    assert bridge.ledger.emitted() == []


def test_the_reconciler_emits_what_no_webhook_delivered_once(bridge_setup, lakefs_client):
    repo, bridge, _ = bridge_setup  # no action installed: lakeFS calls nobody
    before = _merge_new_data(repo, lakefs_client, "old")
    assert bridge.reconcile_once(lakefs_client) == []  # first pass: history is not replayed
    missed = _merge_new_data(repo, lakefs_client, "missed")
    incoming = repo.branch("incoming-batch-7").create(source_reference="main")
    incoming.object("sft/raw.jsonl").upload(b"raw")
    incoming_commit = incoming.commit(message="raw data").get_commit().id

    emitted = bridge.reconcile_once(lakefs_client)
    assert {(e.event, e.branch, e.commit_id) for e in emitted} == {
        ("lakefs.merge.completed", "main", missed), ("lakefs.commit.completed", "incoming-batch-7", incoming_commit)}
    assert bridge.reconcile_once(lakefs_client) == []
    _wait_for_events(missed, "lakefs.merge.completed")
    _all_sent_events_stored()
    assert len(_stored_events(missed, "lakefs.merge.completed")) == 1
    assert _stored_events(before, "lakefs.merge.completed") == []
    assert before not in {e["commit_id"] for e in bridge.ledger.emitted()}


def test_prefect_down_means_503_and_the_commit_is_emitted_later(prefect_harness, tmp_path):
    ledger = EmittedLedger(tmp_path / "emitted.db")
    down = Bridge(BridgeConfig(), BRIDGE_TOKEN, PrefectEventSink("http://127.0.0.1:9/api", timeout=1), ledger,
                  repository="demo")
    status, answer = down.handle_webhook(MERGE_BODY, BRIDGE_TOKEN)
    assert status == 503 and "unreachable" in answer["error"]
    assert ledger.emitted() == []  # the claim was released
    up = Bridge(BridgeConfig(), BRIDGE_TOKEN, PrefectEventSink(), ledger, repository="demo")
    assert up.handle_webhook(MERGE_BODY, BRIDGE_TOKEN)[1]["status"] == "emitted"


# ------------------------------------------------------------------ a bridge that dies mid-emit

_DIE_WHILE_EMITTING = """
import os, signal, sys
from pathlib import Path
from sluice.core.config import BridgeConfig
from sluice.shell.event_bridge import Bridge, BridgeEvent, EmittedLedger

class DiesWhileEmitting:
    api_url = "unused"
    def emit(self, events):
        os.kill(os.getpid(), signal.SIGKILL)

path, event = Path(sys.argv[1]), BridgeEvent.model_validate_json(sys.argv[2])
bridge = Bridge(BridgeConfig(state_file=path), "token", DiesWhileEmitting(), EmittedLedger(path), event.repository)
bridge.emit_once(event, "webhook")
"""


def _die_while_emitting(ledger_path: Path, event: BridgeEvent) -> None:
    """A bridge process that claims the event in the ledger and is killed before it confirms it."""
    process = subprocess.run([sys.executable, "-c", _DIE_WHILE_EMITTING, str(ledger_path), event.model_dump_json()],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert [(e["commit_id"], e["state"]) for e in EmittedLedger(ledger_path).emitted()] == [
        (event.commit_id, "claimed")]


def _claims_expire_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the claim expiry (120 s) had passed since every claim in the ledger."""
    monkeypatch.setattr(bridge_ledger, "_CLAIM_EXPIRES_SECONDS", 0.0)


def test_a_retried_hook_emits_once_what_a_bridge_that_died_mid_emit_claimed(prefect_harness, tmp_path, monkeypatch):
    body = {**MERGE_BODY, "commit_id": unique_name("crashed")}
    event = event_from_webhook(body)
    assert event is not None
    _die_while_emitting(tmp_path / "emitted.db", event)
    bridge = Bridge(BridgeConfig(state_file=tmp_path / "emitted.db"), BRIDGE_TOKEN, PrefectEventSink(),
                    EmittedLedger(tmp_path / "emitted.db"), repository="demo")
    # a fresh claim may be an emit still under way elsewhere: not emitted a second time
    assert bridge.handle_webhook(body, BRIDGE_TOKEN)[1]["status"] == "duplicate"
    _claims_expire_now(monkeypatch)
    assert bridge.handle_webhook(body, BRIDGE_TOKEN)[1]["status"] == "emitted"
    assert bridge.handle_webhook(body, BRIDGE_TOKEN)[1]["status"] == "duplicate"
    assert bridge.counts["emitted"] == 1
    assert [(e["state"], e["via"]) for e in bridge.ledger.emitted()] == [("emitted", "webhook")]
    _wait_for_events(event.commit_id, event.event)
    _all_sent_events_stored()
    assert len(_stored_events(event.commit_id, event.event)) == 1


def test_the_reconciler_emits_once_what_a_bridge_that_died_mid_emit_claimed(bridge_setup, lakefs_client,
                                                                            monkeypatch):
    repo, bridge, _ = bridge_setup  # no action installed: the reconciler is the only way in
    assert bridge.reconcile_once(lakefs_client) == []  # first pass: records where branches stand
    merge_commit = _merge_new_data(repo, lakefs_client)
    event = event_from_commit(repo.id, "main", repo.commit(merge_commit).get_commit())
    _die_while_emitting(bridge.ledger.path, event)

    # while the claim is fresh the reconciler leaves the merge alone, but must come back to it
    assert merge_commit not in {e.commit_id for e in bridge.reconcile_once(lakefs_client)}
    _claims_expire_now(monkeypatch)
    assert [e.commit_id for e in bridge.reconcile_once(lakefs_client)] == [merge_commit]
    assert bridge.reconcile_once(lakefs_client) == []
    assert ("emitted", "reconcile") in {(e["state"], e["via"]) for e in bridge.ledger.emitted()
                                        if e["commit_id"] == merge_commit}
    _wait_for_events(merge_commit, "lakefs.merge.completed")
    _all_sent_events_stored()
    assert len(_stored_events(merge_commit, "lakefs.merge.completed")) == 1


def test_a_reconcile_pass_that_cannot_reach_prefect_leaves_its_commits_to_the_next(bridge_setup, lakefs_client):
    repo, bridge, _ = bridge_setup
    assert bridge.reconcile_once(lakefs_client) == []
    merge_commit = _merge_new_data(repo, lakefs_client)
    working = bridge.sink
    bridge.sink = PrefectEventSink("http://127.0.0.1:9/api", timeout=1)  # Prefect down for one pass
    with pytest.raises(PrefectUnavailable):
        bridge.reconcile_once(lakefs_client)
    bridge.sink = working
    assert merge_commit in {e.commit_id for e in bridge.reconcile_once(lakefs_client)}
    assert bridge.reconcile_once(lakefs_client) == []
