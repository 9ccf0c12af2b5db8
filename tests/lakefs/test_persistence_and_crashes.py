"""The embedded server keeps everything across restarts, and a crash during a
commit or merge leaves the branch before or after it, never half-way.

Crashes are real: the server process is SIGKILLed — at exact points by a
webhook listener that kills it while a pre-hook is in flight (after the commit
is built, before the branch moves), and at arbitrary points during a large
commit."""

from __future__ import annotations

import math
import threading
import time

import lakefs
import pytest

from sluice.shell.local_lakefs import EmbeddedLakeFS
from tests.lakefs.crashing_server import action_file as _action
from tests.lakefs.crashing_server import client_for as _client
from tests.lakefs.crashing_server import kill_on_hook as _kill_on_hook
from tests.lakefs.crashing_server import restart as _restart
from tests.lakefs.crashing_server import swallow_crash as _swallow_crash
from tests.lakefs.crashing_server import server  # noqa: F401  (fixture)
from tests.lakefs.webhook_listener import ReceivedCall, WebhookListener


def _repo(server: EmbeddedLakeFS) -> lakefs.Repository:
    return lakefs.Repository("crash-test", client=_client(server))


def test_restart_keeps_commits_branches_tags_and_staged_writes(server):
    repo = lakefs.Repository("persisted", client=_client(server)).create(storage_namespace="local://persisted")
    main = repo.branch("main")
    main.object("data/a.csv").upload(data=b"a\n1\n", metadata={"k": "v"})
    commit = main.commit("first", metadata={"run": "1"}).get_commit()
    repo.tag("v1").create(commit.id)
    feature = repo.branch("feature").create("main")
    feature.object("staged.txt").upload(data=b"not committed yet")

    _restart(server, crash=False)

    repo = lakefs.Repository("persisted", client=_client(server))
    assert repo.branch("main").get_commit().id == commit.id
    assert repo.tag("v1").get_commit().metadata == {"run": "1"}
    assert repo.ref("v1").object("data/a.csv").stat().metadata == {"k": "v"}
    assert repo.ref("main").object("data/a.csv").reader().read() == b"a\n1\n"
    assert [c.path for c in repo.branch("feature").uncommitted()] == ["staged.txt"]
    assert repo.branch("feature").object("staged.txt").reader().read() == b"not committed yet"
    assert sorted(b.id for b in repo.branches()) == ["feature", "main"]


def test_crash_between_building_a_commit_and_moving_the_branch(server):
    listener = _kill_on_hook(server, "pre-commit")
    try:
        repo = _repo(server).create(storage_namespace="local://crash-test")
        main = repo.branch("main")
        head = main.head.id
        main.object("_lakefs_actions/crash.yaml").upload(data=_action(listener.url, "pre-commit"))
        for i in range(20):
            main.object(f"rows/{i}.json").upload(data=b"{}")
        with pytest.raises(Exception):  # noqa: B017 (the server dies mid-request)
            main.commit("never lands")
        server.start()

        main = _repo(server).branch("main")
        assert main.head.id == head  # before the commit ...
        assert len(list(main.uncommitted())) == 21  # ... with every staged write kept
        main.object("_lakefs_actions/crash.yaml").delete()
        assert main.commit("lands now").get_commit().parents == [head]
        assert len(list(main.objects(prefix="rows/"))) == 20
    finally:
        listener.close()


def test_crash_during_a_pre_merge_hook_leaves_the_destination_alone(server):
    listener = _kill_on_hook(server, "pre-merge")
    try:
        repo = _repo(server).create(storage_namespace="local://crash-test")
        feature = repo.branch("feature").create("main")
        feature.object("_lakefs_actions/crash.yaml").upload(data=_action(listener.url, "pre-merge"))
        feature.object("new.txt").upload(data=b"x")
        feature.commit("feature")
        main_head = repo.branch("main").head.id
        with pytest.raises(Exception):  # noqa: B017 (the server dies mid-request)
            feature.merge_into(repo.branch("main"))
        server.start()
        main = _repo(server).branch("main")
        assert main.head.id == main_head
        assert not main.object("new.txt").exists()
    finally:
        listener.close()


def test_crash_after_the_commit_is_applied_keeps_it(server):
    listener = _kill_on_hook(server, "post-commit")
    try:
        repo = _repo(server).create(storage_namespace="local://crash-test")
        main = repo.branch("main")
        main.object("_lakefs_actions/crash.yaml").upload(data=_action(listener.url, "post-commit"))
        commit = main.commit("durable")  # answered before post hooks run; the id is in the answer
        deadline = time.monotonic() + 10
        while server.process.poll() is None and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.05)
        server.start()
        main = _repo(server).branch("main")
        assert main.head.id == commit.id
        assert list(main.uncommitted()) == []
    finally:
        listener.close()


class _HeldPreCommitHook:
    """A pre-commit webhook that holds each commit in flight (built, branch not moved) for
    ``seconds``, and records per branch when it was called and when it answered."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.called: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.listener = WebhookListener(on_call=self._hold)

    def _hold(self, call: ReceivedCall) -> None:
        branch = call.body.get("branch_id", "")
        self.called[branch] = time.monotonic()
        time.sleep(self.seconds)
        self.answered[branch] = time.monotonic()

    def in_flight_throughout(self, branch: str, start: float, end: float) -> bool:
        """Whether the branch's commit sat in its pre-commit hook from ``start`` to ``end``."""
        called = self.called.get(branch)
        return called is not None and called <= start and self.answered.get(branch, math.inf) > end


def _commit_in_thread(server: EmbeddedLakeFS, branch: str, answers: dict[str, str]) -> threading.Thread:
    def commit() -> None:
        answers[branch] = _repo(server).branch(branch).commit("delete all").get_commit().id

    thread = threading.Thread(target=lambda: _swallow_crash(commit))
    thread.start()
    return thread


@pytest.mark.slow
def test_kills_at_arbitrary_moments_of_a_large_commit_leave_before_or_after(server):
    """SIGKILL at spread-out moments of a commit that deletes 2,000 objects — while it builds its
    tree, while its pre-commit hook holds it in flight, after it answered — and restart: the branch
    is exactly before or exactly after; a commit killed in flight is before, an answered one after."""
    repo = _repo(server).create(storage_namespace="local://crash-test")
    main = repo.branch("main")
    paths = [f"part-{i:05d}" for i in range(2000)]
    with main.transact(commit_message="2000 objects") as tx:
        for path in paths:
            tx.object(path).upload(data=path.encode())

    def stage_deletions(name: str, source: str) -> None:
        branch = _repo(server).branch(name).create(source)
        for start in range(0, len(paths), 1000):
            branch.delete_objects(paths[start:start + 1000])

    stage_deletions("calibrate", main.head.id)
    started = time.monotonic()
    _repo(server).branch("calibrate").commit("calibration")
    build_seconds = time.monotonic() - started
    hook = _HeldPreCommitHook(seconds=max(0.3, build_seconds))
    try:
        main.object("_lakefs_actions/hold.yaml").upload(data=_action(hook.listener.url, "pre-commit"))
        full = main.commit("hold every commit in its pre-commit hook").get_commit().id

        answers: dict[str, str] = {}
        in_flight: list[str] = []
        outcomes: list[str] = []
        # kills while the tree is built, while the hook holds the commit, and after the answer (None)
        delays = [build_seconds * f for f in (0.25, 0.5, 0.75)] + [build_seconds + hook.seconds * f
                                                                    for f in (0.25, 0.5, 0.75)] + [None]
        for trial, delay in enumerate(delays):
            name = f"trial-{trial}"
            stage_deletions(name, full)
            thread = _commit_in_thread(server, name, answers)
            if delay is None:
                thread.join()
            else:
                time.sleep(delay)
            kill_started = time.monotonic()
            server.kill()
            if hook.in_flight_throughout(name, kill_started, time.monotonic()):
                in_flight.append(name)
            thread.join()
            server.start()

            branch = _repo(server).branch(name)
            head = branch.get_commit()
            remaining = sum(1 for _ in branch.objects(prefix="part-"))
            pending = sum(1 for _ in branch.uncommitted())
            if head.id == full:
                assert (remaining, pending) == (0, len(paths)), f"{name}: half-committed (before)"
                assert name not in answers, f"{name}: the commit was answered, then lost"
                outcomes.append("before")
            else:
                assert head.parents == [full], f"{name}: unexpected head"
                assert (remaining, pending) == (0, 0), f"{name}: half-committed (after)"
                assert sum(1 for _ in _repo(server).ref(head.id).objects(prefix="part-")) == 0
                assert name not in in_flight, f"{name}: killed in its pre-commit hook, yet the commit landed"
                assert answers.get(name, head.id) == head.id, f"{name}: answered another commit id"
                outcomes.append("after")
        assert in_flight, (f"no kill landed while a commit was in flight (built in {build_seconds:.2f} s, held "
                           f"{hook.seconds:.2f} s): the test checked only before and after")
        assert outcomes[-1] == "after" and f"trial-{trial}" in answers  # killed after its answer: kept
    finally:
        hook.listener.close()
