"""Fault injection: SIGKILL the embedded lakeFS server at random moments while
four writers upload, delete, commit and merge through the official SDK, then
restart it on the same data directory and check, every time, that

- every acknowledged write is present and every acknowledged delete absent;
- SQLite's ``PRAGMA integrity_check`` says ok;
- every acknowledged commit still has exactly what its branch showed when it
  was made, and its objects are readable (new commits are read in full; older
  ones, already read, are checked by listing; all are read again at the end);
- main shows each writer's last acknowledged merge.

"Acknowledged" means the SDK call returned. A call the kill interrupted may or
may not have applied: for it the model allows both outcomes until a later
acknowledged call settles the path. Each writer owns a branch and a folder, so
its merges into main never conflict (issue 13, "Done when").
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import lakefs
import pytest
import urllib3
from lakefs.exceptions import LakeFSException, ServerException

from sluice.shell.local_lakefs import EmbeddedLakeFS
from tests.lakefs.crashing_server import client_for
from tests.lakefs.crashing_server import server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

REPO = "faults"
WRITERS = 4
KILLS = 30
PATHS_PER_WRITER = 6
SEED = 13
ABSENT = None  # a path's state when it is not on the branch

State = bytes | None


class Fleet:
    """The writers' view of the server: the current client (None while it is
    down), the operations in flight, and the place where writers park while
    the test restarts and checks the server."""

    def __init__(self, size: int):
        self._size = size
        self._cond = threading.Condition()
        self._client: lakefs.Client | None = None
        self._stopping = False
        self._parked = 0
        self._in_flight: Counter[str] = Counter()
        self.errors: list[BaseException] = []

    def client_when_up(self) -> lakefs.Client | None:
        """The client to use for the next operation; None once stopping."""
        with self._cond:
            while self._client is None and not self._stopping:
                self._parked += 1
                self._cond.notify_all()
                self._cond.wait()
                self._parked -= 1
            return None if self._stopping else self._client

    def run(self, kind: str, call: Callable[[], Any]) -> tuple[str, Any]:
        """('acked', result), ('rejected', error: a 4xx answer, so not applied)
        or ('unknown', error: the server died under it)."""
        with self._cond:
            self._in_flight[kind] += 1
        try:
            return "acked", call()
        except ServerException as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                return "rejected", exc
            raise  # a 5xx is a server bug, never an effect of the kill
        except (urllib3.exceptions.HTTPError, LakeFSException, ConnectionError) as exc:
            return "unknown", exc
        finally:
            with self._cond:
                self._in_flight[kind] -= 1

    def kill(self, server: EmbeddedLakeFS) -> Counter[str]:
        """SIGKILL the server; returns the operations that were in flight."""
        with self._cond:
            in_flight = +self._in_flight  # drops zero counts
            self._client = None
            server.kill()
        return in_flight

    def wait_until_parked(self, timeout: float = 30) -> None:
        with self._cond:
            # a writer that failed (see ``errors``) never parks again
            parked = self._cond.wait_for(lambda: self._parked == self._size - len(self.errors), timeout)
            assert parked, "writers did not park"

    def up(self, client: lakefs.Client) -> None:
        with self._cond:
            self._client = client
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


class Writer(threading.Thread):
    """Uploads, deletes, commits on its own branch and merges it into main,
    recording what each acknowledged call promises."""

    def __init__(self, index: int, fleet: Fleet):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.branch, self.folder = f"w{index}", f"w{index}/"
        self.fleet, self.rng = fleet, random.Random(SEED * 100 + index)
        self.states: dict[str, set[State]] = {f"{self.folder}f{j}": {ABSENT} for j in range(PATHS_PER_WRITER)}
        self.commits: dict[str, dict[str, State]] = {}  # acked commit → the settled paths it must hold
        self.merges: list[str] = []  # acked merge commits into main
        self.merge_unsettled = False  # a merge after the last acked one may have landed
        self.outcomes: Counter[str] = Counter()
        self._seq = 0

    def run(self) -> None:
        try:
            while (client := self.fleet.client_when_up()) is not None:
                self.step(lakefs.Repository(REPO, client=client))
        except BaseException as exc:  # noqa: BLE001 (handed to the test, which fails with it)
            self.fleet.errors.append(exc)

    def step(self, repo: lakefs.Repository) -> None:
        branch, roll = repo.branch(self.branch), self.rng.random()
        if roll < 0.5:
            self._upload_object(branch)
        elif roll < 0.7:
            self._delete_object(branch)
        elif roll < 0.85:
            self._commit(branch)
        else:
            self._merge(repo, branch)

    def _settle(self, kind: str, path: str, outcome: str, new: State) -> None:
        self.outcomes[f"{kind} {outcome}"] += 1
        if outcome == "acked":
            self.states[path] = {new}
        elif outcome == "unknown":
            self.states[path].add(new)

    def _upload_object(self, branch: lakefs.Branch) -> None:
        self._seq += 1
        path = self.rng.choice(sorted(self.states))
        data = f"{self.branch} upload {self._seq} {self.rng.random()}".encode()
        outcome, _ = self.fleet.run("upload", lambda: branch.object(path).upload(data=data, mode="wb"))
        self._settle("upload", path, outcome, data)

    def _delete_object(self, branch: lakefs.Branch) -> None:
        path = self.rng.choice(sorted(self.states))
        outcome, _ = self.fleet.run("delete", lambda: branch.object(path).delete())
        self._settle("delete", path, outcome, ABSENT)

    def _commit(self, branch: lakefs.Branch) -> None:
        settled = {p: next(iter(s)) for p, s in self.states.items() if len(s) == 1}  # what the branch shows
        outcome, result = self.fleet.run("commit", lambda: branch.commit(f"{self.branch} commit").id)
        self.outcomes[f"commit {outcome}"] += 1
        if outcome == "acked":
            self.commits[result] = settled

    def _merge(self, repo: lakefs.Repository, branch: lakefs.Branch) -> None:
        outcome, result = self.fleet.run("merge", lambda: branch.merge_into(repo.branch("main")))
        self.outcomes[f"merge {outcome}"] += 1
        if outcome == "acked":
            self.merges.append(result)
            self.merge_unsettled = False
        elif outcome == "unknown":
            self.merge_unsettled = True


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _listing(ref: lakefs.Reference, prefix: str) -> dict[str, str]:
    return {o.path: o.checksum for o in ref.objects(prefix=prefix)}


class Checker:
    """What must hold after every restart."""

    def __init__(self, data_dir: Path):
        self.database = data_dir / "metadata.sqlite3"
        self.read_commits: set[str] = set()  # commits whose objects were read in full

    def check(self, repo: lakefs.Repository, writers: list[Writer], *, read_all: bool = False) -> None:
        self._integrity()
        main_history = {c.id for c in repo.branch("main").log()}
        for writer in writers:
            self._branch(repo, writer)
            for commit_id, settled in writer.commits.items():
                read = read_all or commit_id not in self.read_commits
                self._commit(repo, writer.folder, commit_id, settled, read=read)
            missing = [m for m in writer.merges if m not in main_history]
            assert not missing, f"acknowledged merges of {writer.branch} not on main: {missing}"
            if writer.merges and not writer.merge_unsettled:
                main = _listing(repo.ref("main"), writer.folder)
                assert main == _listing(repo.ref(writer.merges[-1]), writer.folder), \
                    f"main does not show {writer.branch}'s last acknowledged merge"

    def _integrity(self) -> None:
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    @staticmethod
    def _branch(repo: lakefs.Repository, writer: Writer) -> None:
        branch = repo.branch(writer.branch)
        shown = _listing(branch, writer.folder)
        for path, allowed in writer.states.items():
            if path not in shown:
                assert ABSENT in allowed, f"{path}: acknowledged write missing on {writer.branch}"
                continue
            data = branch.object(path).reader().read()
            assert data in allowed, f"{path}: {data!r} on {writer.branch}, expected one of {allowed}"

    def _commit(self, repo: lakefs.Repository, folder: str, commit_id: str, settled: dict[str, State],
                read: bool) -> None:
        ref = repo.ref(commit_id)
        held = _listing(ref, folder)
        for path, state in settled.items():
            expected = None if state is None else _md5(state)
            assert held.get(path) == expected, f"commit {commit_id[:12]}: {path} is {held.get(path)}, not {expected}"
        if read:
            for path, checksum in held.items():
                assert _md5(ref.object(path).reader().read()) == checksum, f"commit {commit_id[:12]}: {path} unreadable"
            self.read_commits.add(commit_id)



def test_sigkill_at_random_moments_loses_no_acknowledged_operation(server):
    started = time.monotonic()
    repo = lakefs.Repository(REPO, client=client_for(server)).create(storage_namespace=f"local://{REPO}")
    for index in range(WRITERS):
        repo.branch(f"w{index}").create("main")
    fleet = Fleet(WRITERS)
    writers = [Writer(index, fleet) for index in range(WRITERS)]
    checker = Checker(server.data_dir)
    for writer in writers:
        writer.start()

    rng, killed_mid_operation = random.Random(SEED), Counter[str]()
    for _ in range(KILLS):
        fleet.up(client_for(server))
        time.sleep(rng.uniform(0.05, 0.4))
        killed_mid_operation += fleet.kill(server)
        fleet.wait_until_parked()
        assert not fleet.errors, fleet.errors
        server.start()
        checker.check(lakefs.Repository(REPO, client=client_for(server)), writers)

    fleet.stop()
    for writer in writers:
        writer.join(10)
    assert not fleet.errors, fleet.errors
    checker.check(lakefs.Repository(REPO, client=client_for(server)), writers, read_all=True)

    outcomes = sum((w.outcomes for w in writers), Counter[str]())
    print(f"\n{KILLS} kills in {time.monotonic() - started:.0f} s; in flight at the kill: "
          f"{dict(killed_mid_operation)}; outcomes: {dict(sorted(outcomes.items()))}")
    assert sum(killed_mid_operation.values()) > 0, "no kill landed while an operation was in flight"
    assert outcomes["upload unknown"] + outcomes["delete unknown"] + outcomes["commit unknown"] > 0
    assert all(outcomes[f"{kind} acked"] > 0 for kind in ("upload", "delete", "commit", "merge")), outcomes
