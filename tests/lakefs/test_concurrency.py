"""Concurrent writers through the official SDK: uploads and commits on
different branches and on the same branch at once, and concurrent merges into
one branch. Nothing may be lost or half-applied."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import lakefs
import pytest
from lakefs.exceptions import BadRequestException


def _client(server):  # type: ignore[no-untyped-def]
    return lakefs.Client(host=server.url, username=server.access_key_id, password=server.secret_access_key)


def test_writers_on_different_branches_then_merging_into_main(repo, lakefs_server):
    def work(worker: int) -> str:
        branch = lakefs.Repository(repo.id, client=_client(lakefs_server)).branch(f"w{worker}").create("main")
        for i in range(25):
            branch.object(f"w{worker}/{i:02d}.json").upload(data=f"{worker}-{i}".encode())
        branch.commit(f"worker {worker}")
        return branch.merge_into(lakefs.Repository(repo.id, client=_client(lakefs_server)).branch("main"))

    with ThreadPoolExecutor(4) as pool:
        merges = list(pool.map(work, range(4)))

    main = repo.branch("main")
    assert len(set(merges)) == 4
    assert len(list(main.objects())) == 100
    for worker in range(4):
        assert main.object(f"w{worker}/24.json").reader().read() == f"{worker}-24".encode()
    # the merges were applied one after another: each merge commit is in main's history
    history = {c.id for c in main.log()}
    assert set(merges) <= history


def test_writers_and_committers_on_the_same_branch(repo, lakefs_server):
    """Four writers upload disjoint objects to one branch and commit. A commit
    may take another writer's staged objects with it (then that writer's own
    commit has nothing left: lakeFS's "no changes"), but no object is lost and
    the history stays a single line."""
    start = repo.branch("main").head.id

    def work(worker: int) -> str:
        branch = lakefs.Repository(repo.id, client=_client(lakefs_server)).branch("main")
        for i in range(25):
            branch.object(f"same/{worker}-{i:02d}").upload(data=bytes([worker, i]))
        try:
            branch.commit(f"worker {worker}")
        except BadRequestException:
            return "nothing left to commit"
        return "committed"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(work, range(4)))

    main = repo.branch("main")
    assert "committed" in outcomes
    assert list(main.uncommitted()) == []
    committed = {o.path for o in repo.ref(main.head.id).objects(prefix="same/")}
    assert committed == {f"same/{w}-{i:02d}" for w in range(4) for i in range(25)}
    chain = [c for c in main.log()]
    assert all(len(c.parents) <= 1 for c in chain)
    assert chain[outcomes.count("committed")].id == start


def test_concurrent_writes_to_one_path_leave_one_whole_version(repo, lakefs_server):
    payloads = [bytes([n]) * 200_000 for n in range(6)]

    def write(n: int) -> None:
        lakefs.Repository(repo.id, client=_client(lakefs_server)).branch("main").object("contested.bin").upload(
            data=payloads[n])

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(6)))
    final = repo.branch("main").object("contested.bin").reader().read()
    assert final in payloads


@pytest.mark.parametrize("writers", [8])
def test_many_parallel_commits_to_separate_branches(repo, lakefs_server, writers):
    def work(n: int) -> str:
        branch = lakefs.Repository(repo.id, client=_client(lakefs_server)).branch(f"p{n}").create("main")
        branch.object("file").upload(data=str(n).encode())
        return branch.commit(f"p{n}").id

    with ThreadPoolExecutor(writers) as pool:
        commits = list(pool.map(work, range(writers)))
    for n, commit_id in enumerate(commits):
        assert repo.ref(commit_id).object("file").reader().read() == str(n).encode()
        assert repo.branch(f"p{n}").head.id == commit_id
