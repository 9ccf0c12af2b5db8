"""A commit or merge that was built but never applied — the server died while
its pre-hook ran — is gone after the restart: its id answers 404, the branch
did not move, and what was staged is still staged (issue 13, item 4).

The kill is real: a webhook listener SIGKILLs the server process from inside
the pre-hook; the restart runs on the same data directory."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import lakefs
import pytest
import yaml
from lakefs.exceptions import NotFoundException, ServerException

from sluice.shell.local_lakefs import EmbeddedLakeFS
from tests.lakefs.crashing_server import action_file, client_for, kill_on_hook
from tests.lakefs.webhook_listener import WebhookListener
from tests.lakefs.crashing_server import server  # noqa: F401  (fixture)



def _repo(server: EmbeddedLakeFS) -> lakefs.Repository:
    return lakefs.Repository("sweep", client=client_for(server))


def _commit_ids_with_message(data_dir: Path, message: str) -> list[str]:
    """Read the dead server's database directly (read-only): the prepared commit
    is not reachable through the API, and its id is not in the pre-commit payload."""
    uri = f"file:{data_dir / 'metadata.sqlite3'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        return [row[0] for row in db.execute("SELECT id FROM commits WHERE message=?", (message,))]


def test_a_commit_prepared_when_the_server_died_is_removed_at_restart(server):
    listener = kill_on_hook(server, "pre-commit")
    try:
        main = _repo(server).create(storage_namespace="local://sweep").branch("main")
        head = main.head.id
        main.object("_lakefs_actions/crash.yaml").upload(data=action_file(listener.url, "pre-commit"))
        main.object("rows/a.json").upload(data=b'{"a": 1}')
        with pytest.raises(Exception):  # noqa: B017 (the server dies mid-request)
            main.commit("never lands")
        (prepared_id,) = _commit_ids_with_message(server.data_dir, "never lands")  # built, not applied

        server.start()
        repo = _repo(server)
        with pytest.raises(NotFoundException):  # before the fix: 200, readable by id forever
            repo.commit(prepared_id).get_commit()
        main = repo.branch("main")
        assert main.head.id == head
        assert {c.path for c in main.uncommitted()} == {"_lakefs_actions/crash.yaml", "rows/a.json"}
        assert main.object("rows/a.json").reader().read() == b'{"a": 1}'
        assert _commit_ids_with_message(server.data_dir, "never lands") == []
    finally:
        listener.close()


def test_a_merge_prepared_when_the_server_died_is_removed_at_restart(server):
    listener = kill_on_hook(server, "pre-merge")
    try:
        repo = _repo(server).create(storage_namespace="local://sweep")
        feature = repo.branch("feature").create("main")
        feature.object("_lakefs_actions/crash.yaml").upload(data=action_file(listener.url, "pre-merge"))
        feature.object("new.txt").upload(data=b"x")
        source = feature.commit("feature").get_commit()
        main_head = repo.branch("main").head.id
        with pytest.raises(Exception):  # noqa: B017 (the server dies mid-request)
            feature.merge_into(repo.branch("main"))
        (call,) = listener.wait_for("pre-merge")
        merge_id = call.body["commit_id"]  # pre-merge hooks are told the merge commit's id

        server.start()
        repo = _repo(server)
        with pytest.raises(NotFoundException):
            repo.commit(merge_id).get_commit()
        assert repo.branch("main").head.id == main_head
        assert repo.commit(source.id).get_commit().id == source.id  # the source commit stays
        assert repo.branch("feature").object("new.txt").exists()
    finally:
        listener.close()


def test_a_commit_or_merge_a_pre_hook_refused_is_not_readable_by_id(server):
    listener = WebhookListener()
    try:
        repo = _repo(server).create(storage_namespace="local://sweep")
        feature = repo.branch("feature").create("main")
        feature.object("_lakefs_actions/refuse.yaml").upload(data=yaml.safe_dump({
            "name": "refuse", "on": {"pre-commit": None, "pre-merge": None},
            "hooks": [{"id": "refuse", "type": "webhook", "properties": {"url": listener.url}}]}).encode())
        feature.commit("the hook")
        listener.status = 500  # from now on every pre-hook fails: 412 to the client
        feature.object("new.txt").upload(data=b"x")
        with pytest.raises(ServerException) as refused_commit:
            feature.commit("refused")
        with pytest.raises(ServerException) as refused_merge:
            feature.merge_into(repo.branch("main"))
        assert refused_commit.value.status_code == refused_merge.value.status_code == 412
        (merge_call,) = listener.wait_for("pre-merge")

        # before the fix both stayed readable by id until the branch's next commit or a restart
        assert _commit_ids_with_message(server.data_dir, "refused") == []
        with pytest.raises(NotFoundException):
            repo.commit(merge_call.body["commit_id"]).get_commit()
    finally:
        listener.close()
