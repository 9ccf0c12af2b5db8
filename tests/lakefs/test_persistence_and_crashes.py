"""The embedded server keeps everything across restarts, and a crash during a
commit or merge leaves the branch before or after it, never half-way.

Crashes are real: the server process is SIGKILLed — at exact points by a
webhook listener that kills it while a pre-hook is in flight (after the commit
is built, before the branch moves), and at arbitrary points during a large
commit."""

from __future__ import annotations

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


@pytest.mark.slow
def test_kills_at_arbitrary_moments_of_a_large_commit_leave_before_or_after(server):
    """SIGKILL at spread-out moments of a commit that deletes 2,000 objects:
    after each restart the branch is exactly before or exactly after."""
    repo = _repo(server).create(storage_namespace="local://crash-test")
    main = repo.branch("main")
    paths = [f"part-{i:05d}" for i in range(2000)]
    with main.transact(commit_message="2000 objects") as tx:
        for path in paths:
            tx.object(path).upload(data=path.encode())
    full = main.head.id

    def stage_deletions(name: str) -> lakefs.Branch:
        branch = _repo(server).branch(name).create(full)
        for start in range(0, len(paths), 1000):
            branch.delete_objects(paths[start:start + 1000])
        return branch

    started = time.monotonic()
    stage_deletions("calibrate").commit("calibration")
    commit_seconds = time.monotonic() - started

    outcomes = []
    for trial, fraction in enumerate([0.05, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5]):
        name = f"trial-{trial}"
        stage_deletions(name)
        commit_thread = threading.Thread(
            target=lambda n=name: _swallow_crash(lambda: _repo(server).branch(n).commit("delete all"))
        )
        commit_thread.start()
        time.sleep(commit_seconds * fraction)
        server.kill()
        commit_thread.join()
        server.start()

        branch = _repo(server).branch(name)
        head = branch.get_commit()
        remaining = sum(1 for _ in branch.objects())
        pending = sum(1 for _ in branch.uncommitted())
        if head.id == full:
            assert (remaining, pending) == (0, len(paths)), f"trial {trial}: half-committed (before)"
            outcomes.append("before")
        else:
            assert head.parents == [full], f"trial {trial}: unexpected head"
            assert (remaining, pending) == (0, 0), f"trial {trial}: half-committed (after)"
            assert sum(1 for _ in _repo(server).ref(head.id).objects()) == 0
            outcomes.append("after")
    assert len(outcomes) == 7

