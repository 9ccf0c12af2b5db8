"""Deletes and resets that arrive while a commit's pre-commit hook runs are
never lost: the commit lands with what it had when it started, and the
delete or reset still holds on the branch afterwards (issue 13, item 1).

The hook is a real webhook that blocks until the test has made its change."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import yaml

from tests.lakefs.webhook_listener import ReceivedCall, WebhookListener

HOOK_WAIT_S = 20


class BlockingHook:
    """A pre-commit webhook that, once armed, holds the commit until ``release()``."""

    def __init__(self) -> None:
        self.armed = threading.Event()  # the commit that installs the hook passes
        self.entered = threading.Event()
        self._released = threading.Event()
        self.listener = WebhookListener(on_call=self._hold)

    def _hold(self, call: ReceivedCall) -> None:
        if call.body.get("event_type") == "pre-commit" and self.armed.is_set():
            self.entered.set()
            assert self._released.wait(HOOK_WAIT_S), "the test never released the hook"

    def release(self) -> None:
        self._released.set()

    def action_file(self) -> bytes:
        return yaml.safe_dump({
            "name": "hold", "on": {"pre-commit": None},
            "hooks": [{"id": "hold", "type": "webhook", "properties": {"url": self.listener.url, "timeout": "30s"}}],
        }).encode()


@pytest.fixture
def hook() -> Iterator[BlockingHook]:
    blocking = BlockingHook()
    yield blocking
    blocking.release()
    blocking.listener.close()


def _commit_in_background(branch, hook: BlockingHook) -> tuple[threading.Thread, dict]:  # type: ignore[no-untyped-def]
    """Start a commit; return once its pre-commit hook is running."""
    outcome: dict = {}

    def commit() -> None:
        outcome["commit"] = branch.commit("while changes arrive").get_commit()

    hook.armed.set()
    thread = threading.Thread(target=commit)
    thread.start()
    assert hook.entered.wait(HOOK_WAIT_S), "the pre-commit hook never ran"
    return thread, outcome


def _install(repo, hook: BlockingHook):  # type: ignore[no-untyped-def]
    main = repo.branch("main")
    main.object("_lakefs_actions/hold.yaml").upload(data=hook.action_file())
    main.commit("install the blocking hook")
    return main


def test_a_delete_during_a_pre_commit_hook_is_not_lost(repo, hook):
    main = _install(repo, hook)
    main.object("new.txt").upload(data=b"staged before the commit")
    thread, outcome = _commit_in_background(main, hook)

    main.object("new.txt").delete()
    assert not main.object("new.txt").exists()
    hook.release()
    thread.join(HOOK_WAIT_S)

    assert "commit" in outcome, "the commit did not finish"
    assert main.head.id == outcome["commit"].id
    assert not main.object("new.txt").exists()  # before the fix: back on the branch, nothing staged
    assert [(c.type, c.path) for c in main.uncommitted()] == [("removed", "new.txt")]


def test_a_reset_during_a_pre_commit_hook_is_not_lost(repo, hook):
    main = _install(repo, hook)
    main.object("kept.txt").upload(data=b"committed")
    main.commit("the committed version")
    main.object("kept.txt").upload(data=b"changed, then reset")
    main.object("added.txt").upload(data=b"added, then reset")
    thread, outcome = _commit_in_background(main, hook)

    main.reset_changes("object", "kept.txt")
    main.reset_changes("object", "added.txt")
    assert main.object("kept.txt").reader().read() == b"committed"
    assert not main.object("added.txt").exists()
    hook.release()
    thread.join(HOOK_WAIT_S)

    assert "commit" in outcome, "the commit did not finish"
    assert main.object("kept.txt").reader().read() == b"committed"
    assert not main.object("added.txt").exists()


def test_a_write_during_a_pre_commit_hook_stays_staged(repo, hook):
    main = _install(repo, hook)
    main.object("a.txt").upload(data=b"in the commit")
    thread, outcome = _commit_in_background(main, hook)
    main.object("b.txt").upload(data=b"after the commit started")
    hook.release()
    thread.join(HOOK_WAIT_S)

    assert repo.ref(outcome["commit"].id).object("a.txt").exists()
    assert not repo.ref(outcome["commit"].id).object("b.txt").exists()
    assert [(c.type, c.path) for c in main.uncommitted()] == [("added", "b.txt")]
