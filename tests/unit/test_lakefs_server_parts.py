"""The embedded server's parts without HTTP: ref expressions, action files,
and the store's all-or-nothing commits under injected faults."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sluice.lakefs_server.actions import ActionFileError, HookEvent, parse_action, parse_duration, render_template
from sluice.lakefs_server.blobs import BlobStore
from sluice.lakefs_server.errors import BadRequest
from sluice.lakefs_server.metadata import trees
from sluice.lakefs_server.metadata.records import ObjectEntry, ResolvedRef
from sluice.lakefs_server.metadata.store import MetadataStore
from sluice.lakefs_server.refs import RefExpression, parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("main", RefExpression("main")),
        ("main~", RefExpression("main", (("~", 1),))),
        ("main~3", RefExpression("main", (("~", 3),))),
        ("abc^2", RefExpression("abc", (("^", 2),))),
        ("main~1^2~3", RefExpression("main", (("~", 1), ("^", 2), ("~", 3)))),
        ("main@", RefExpression("main", branch_modifier="@")),
        ("main$", RefExpression("main", branch_modifier="$")),
        ("v1.0-rc", RefExpression("v1.0-rc")),
    ],
)
def test_parse_ref(text, expected):
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["", "~1", "main~x", "main@~1", "main~1@", "main@1", "has space", "main@@"])
def test_invalid_refs(text):
    with pytest.raises(BadRequest):
        parse_ref(text)


def _action_yaml(**overrides: object) -> bytes:
    import yaml

    action = {"name": "notify", "on": {"post-merge": {"branches": ["main"]}},
              "hooks": [{"id": "hook_1", "type": "webhook", "properties": {"url": "http://x", "timeout": "1m30s"}}]}
    action.update(overrides)
    return yaml.safe_dump(action).encode()


def test_parse_action_reads_events_branches_and_hooks():
    action = parse_action("_lakefs_actions/a.yaml", _action_yaml())
    assert action.name == "notify"
    assert action.matches("post-merge", "main") and not action.matches("post-merge", "dev")
    assert not action.matches("post-commit", "main")
    assert parse_duration(action.hooks[0].properties["timeout"]) == 90.0


def test_bare_on_key_is_read_even_though_yaml_11_calls_it_true():
    text = b"name: ab\non:\n  post-commit:\nhooks:\n  - id: h1\n    type: webhook\n    properties: {url: 'http://x'}\n"
    assert parse_action("f.yaml", text).matches("post-commit", "any-branch")


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"name": ""}, "name"),
        ({"on": {}}, "on: at least one event"),
        ({"on": {"post-deploy": None}}, "on.post-deploy: unknown event type"),
        ({"on": {"post-create-tag": {"branches": ["main"]}}}, "not allowed on tag events"),
        ({"hooks": []}, "hooks: at least one hook"),
        ({"hooks": [{"id": "h1", "type": "lua", "properties": {}}]}, "only webhook"),
        ({"hooks": [{"id": "h1", "type": "webhook", "properties": {}}]}, "properties.url: required"),
        ({"hooks": [{"id": "h1", "type": "webhook", "properties": {"url": "u", "timeout": "soon"}}]}, "timeout"),
        ({"hooks": [{"id": "1bad", "type": "webhook", "properties": {"url": "u"}}]}, "hooks[0].id"),
    ],
)
def test_invalid_action_files_name_the_file_and_field(overrides, problem):
    with pytest.raises(ActionFileError) as err:
        parse_action("_lakefs_actions/bad.yaml", _action_yaml(**overrides))
    assert err.value.message.startswith("action file _lakefs_actions/bad.yaml:")
    assert problem in err.value.message


def test_templates_read_only_lakefsaction_variables():
    environ = {"LAKEFSACTION_TOKEN": "t0k", "HOME": "/root"}
    assert render_template("Bearer {{ ENV.LAKEFSACTION_TOKEN }}", environ) == "Bearer t0k"
    assert render_template("{{ENV.HOME}}", environ) == ""
    with pytest.raises(ValueError, match="LAKEFSACTION_MISSING"):
        render_template("{{ ENV.LAKEFSACTION_MISSING }}", environ)


def test_webhook_payload_omits_empty_fields_like_lakefs():
    event = HookEvent("pre-commit", "repo", branch_id="main", source_ref="main", commit_message="m")
    action = parse_action("a.yaml", _action_yaml())
    body = event.payload(action, action.hooks[0], "2026-01-01T00:00:00Z")
    assert body == {"event_type": "pre-commit", "event_time": "2026-01-01T00:00:00Z", "action_name": "notify",
                    "hook_id": "hook_1", "repository_id": "repo", "branch_id": "main", "source_ref": "main",
                    "commit_message": "m"}


# ------------------------------------------------------------------ store faults


def _store_with_staged(tmp_path: Path, count: int = 50) -> tuple[MetadataStore, str]:
    store = MetadataStore(tmp_path / "meta.sqlite3")
    blobs = BlobStore(tmp_path)
    store.create_repository("faults", "local://faults", "main")
    for i in range(count):
        writer = blobs.writer()
        writer.write(f"object {i}".encode())
        blob = writer.finish()
        store.stage_object("faults", "main", ObjectEntry(f"p/{i:03d}", blob.address, blob.checksum, blob.size, 1,
                                                          "text/plain", {}))
    return store, store.branch_head("faults", "main")


class _FailingConnection:
    """Wraps a sqlite3 connection; raises on the n-th matching statement."""

    def __init__(self, db: sqlite3.Connection, fragment: str, fail_on: int):
        self._db, self._fragment, self._left = db, fragment, fail_on

    def execute(self, sql: str, *args):  # type: ignore[no-untyped-def]
        if self._fragment in sql:
            self._left -= 1
            if self._left == 0:
                raise sqlite3.OperationalError("disk I/O error (injected)")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._db, name)


@pytest.mark.parametrize(("fragment", "fail_on"), [("UPDATE branches", 1), ("DELETE FROM staging", 1),
                                                   ("DELETE FROM staging", 30)])
def test_a_fault_while_applying_a_commit_leaves_the_branch_as_it_was(tmp_path, fragment, fail_on):
    store, head = _store_with_staged(tmp_path)
    pending = store.prepare_commit("faults", "main", message="m", metadata={}, committer="t", allow_empty=False)
    real = store.db
    store.db = _FailingConnection(real, fragment, fail_on)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError):
        store.apply_commit(pending)
    store.db = real
    assert store.branch_head("faults", "main") == head
    assert len(store.diff_uncommitted("faults", "main")) == 50
    # and the same commit applies cleanly afterwards
    assert store.apply_commit(pending).id == pending.commit.id
    assert store.diff_uncommitted("faults", "main") == []
    assert len(list(store.iter_entries("faults", ResolvedRef(pending.commit.id)))) == 50


def test_a_fault_while_writing_a_tree_leaves_no_half_tree(tmp_path):
    store, head = _store_with_staged(tmp_path)
    real = store.db
    store.db = _FailingConnection(real, "INSERT OR IGNORE INTO commits", 1)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError):
        store.prepare_commit("faults", "main", message="m", metadata={}, committer="t", allow_empty=False)
    store.db = real
    # the tree insert was rolled back with the commit: a retry stores it whole
    assert real.execute("SELECT count(*) FROM tree_entries").fetchone()[0] == 0
    pending = store.prepare_commit("faults", "main", message="m", metadata={}, committer="t", allow_empty=False)
    assert real.execute("SELECT count(*) FROM tree_entries WHERE tree_id=?",
                        (pending.commit.tree_id,)).fetchone()[0] == 50
    assert store.branch_head("faults", "main") == head


def test_writes_staged_after_a_commit_was_built_stay_staged(tmp_path):
    """lakeFS seals the staging area when a commit starts: a write that lands
    while pre-commit hooks run belongs to the next commit."""
    store, _ = _store_with_staged(tmp_path, count=3)
    pending = store.prepare_commit("faults", "main", message="m", metadata={}, committer="t", allow_empty=False)
    late = ObjectEntry("p/000", "0" * 64, "c", 1, 2, "text/plain", {"late": "yes"})
    store.stage_object("faults", "main", late)  # rewrites a path the commit already took
    store.apply_commit(pending)
    changes = store.diff_uncommitted("faults", "main")
    assert [(c.type, c.path) for c in changes] == [("changed", "p/000")]


def test_a_committed_delete_leaves_no_tombstone_staged(tmp_path):
    """Through the API a leftover tombstone hides only a path the head lacks, and a merge clears
    the staging area: only the staging area itself shows that the commit took the deletion."""
    store, _ = _store_with_staged(tmp_path, count=2)
    _commit(store)
    store.delete_objects("faults", "main", ["p/000"])
    assert list(trees.iter_staging(store.db, "faults", "main")) == [("p/000", None)]
    commit = _commit(store)
    assert list(trees.iter_staging(store.db, "faults", "main")) == []
    assert [e.path for e in store.iter_entries("faults", ResolvedRef(commit.id, "main"))] == ["p/001"]


def _commit(store: MetadataStore):  # type: ignore[no-untyped-def]
    pending = store.prepare_commit("faults", "main", message="m", metadata={}, committer="t", allow_empty=False)
    return store.apply_commit(pending)


def test_blob_addresses_are_validated(tmp_path):
    blobs = BlobStore(tmp_path)
    for bad in ("../../etc/passwd", "/etc/passwd", "ab" * 31 + "zz", ""):
        with pytest.raises(ValueError):
            blobs.path_of(bad)
