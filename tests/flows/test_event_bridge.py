"""The event bridge against real parts: the embedded lakeFS (driven by the
SDK, calling the bridge through the shipped action file), the bridge over
HTTP, and a real Prefect API whose events are read back."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import lakefs
import pytest

from sluice.core.config import BridgeConfig
from sluice.shell.event_bridge import (
    TOKEN_HEADER,
    Bridge,
    EmittedLedger,
    PrefectEventSink,
    WebhookError,
    create_app,
    event_from_commit,
    event_from_webhook,
    install_action,
)
from tests.conftest import BRIDGE_TOKEN, unique_name

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


def _events_for(commit_id: str, name: str, timeout: float = 20.0) -> list:
    """Events Prefect stored for a commit (the persister writes them a moment after they arrive)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    deadline = time.monotonic() + timeout
    since = datetime.now(UTC) - timedelta(days=3650)
    found: list = []
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            page = client.read_events(filter=EventFilter(event=EventNameFilter(name=[name]),
                                                         occurred=EventOccurredFilter(since=since)), limit=50)
        found = [e for e in page.events if e.payload.get("commit_id") == commit_id]
        if found:
            time.sleep(0.5)  # a duplicate would arrive about as fast: look once more
            with get_client(sync_client=True) as client:
                page = client.read_events(filter=EventFilter(event=EventNameFilter(name=[name]),
                                                             occurred=EventOccurredFilter(since=since)), limit=50)
            return [e for e in page.events if e.payload.get("commit_id") == commit_id]
        time.sleep(0.2)
    return found


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

    events = _events_for(merge_commit, "lakefs.merge.completed")
    assert len(events) == 1
    assert events[0].resource.id == f"lakefs.repo.{repo.id}.branch.main"
    emitted = {(e["event"], e["branch"], e["commit_id"], e["via"]) for e in bridge.ledger.emitted()}
    assert ("lakefs.merge.completed", "main", merge_commit, "webhook") in emitted
    # the commit on the incoming-* branch before the merge was announced too (post-commit)
    assert {(event, via) for event, branch, _, via in emitted if branch.startswith("incoming-")} == {
        ("lakefs.commit.completed", "webhook")}
    assert len(emitted) == 2

    # lakeFS retrying the hook, and the reconciler finding the commit: neither emits again
    body = {**MERGE_BODY, "repository_id": repo.id, "commit_id": merge_commit, "source_ref": merge_commit}
    again = httpx.post(f"{server.url}/lakefs", json=body, headers={TOKEN_HEADER: BRIDGE_TOKEN})
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    bridge.reconcile_once(lakefs_client)  # first pass: records where branches stand
    assert bridge.reconcile_once(lakefs_client) == []
    assert len(_events_for(merge_commit, "lakefs.merge.completed")) == 1


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
    assert len(_events_for(missed, "lakefs.merge.completed")) == 1
    assert _events_for(before, "lakefs.merge.completed", timeout=1) == []


def test_prefect_down_means_503_and_the_commit_is_emitted_later(prefect_harness, tmp_path):
    ledger = EmittedLedger(tmp_path / "emitted.db")
    down = Bridge(BridgeConfig(), BRIDGE_TOKEN, PrefectEventSink("http://127.0.0.1:9/api", timeout=1), ledger,
                  repository="demo")
    status, answer = down.handle_webhook(MERGE_BODY, BRIDGE_TOKEN)
    assert status == 503 and "unreachable" in answer["error"]
    assert ledger.emitted() == []  # the claim was released
    up = Bridge(BridgeConfig(), BRIDGE_TOKEN, PrefectEventSink(), ledger, repository="demo")
    assert up.handle_webhook(MERGE_BODY, BRIDGE_TOKEN)[1]["status"] == "emitted"
