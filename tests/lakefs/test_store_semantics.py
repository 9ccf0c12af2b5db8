"""The embedded lakeFS server's commit, merge, delete and reset rules, on its metadata store
directly (a real SQLite file, in this process). The SDK tests drive the same store through a
server subprocess, where mutation testing cannot see it run; these pin each rule so that a
mutant of the store fails here (tools/mutation.py, scope "lakefs-merge")."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sluice.lakefs_server.errors import BadRequest, Conflict, MergeConflict, NotFound
from sluice.lakefs_server.metadata.records import Commit, Difference, ObjectEntry
from sluice.lakefs_server.metadata.store import MetadataStore

REPO = "repo"


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    store = MetadataStore(tmp_path / "meta.sqlite3")
    store.create_repository(REPO, f"local://{REPO}", "main")
    return store


def _obj(path: str, content: str, **metadata: str) -> ObjectEntry:
    data = content.encode()
    return ObjectEntry(path, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), len(data), 1,
                       "text/plain", dict(metadata))


def _write(store: MetadataStore, branch: str, **files: str) -> None:
    for path, content in files.items():
        store.stage_object(REPO, branch, _obj(path, content))


def _commit(store: MetadataStore, branch: str, message: str = "m", allow_empty: bool = False) -> Commit:
    return store.apply_commit(store.prepare_commit(REPO, branch, message=message, metadata={}, committer="t",
                                                   allow_empty=allow_empty))


def _merge(store: MetadataStore, source: str, destination: str, **options: object) -> Commit:
    settings: dict = {"message": None, "metadata": {}, "strategy": None, "committer": "t", "allow_empty": False,
                      "squash": False} | options
    return store.apply_merge(store.prepare_merge(REPO, source, destination, **settings))


def _files(store: MetadataStore, ref: str) -> dict[str, int]:
    """What ``ref`` shows (a branch: with its staged changes): path → size."""
    return {e.path: e.size_bytes for e in store.iter_entries(REPO, store.resolve(REPO, ref))}


def _diff(changes: list[Difference]) -> list[tuple[str, str, int | None]]:
    return [(d.type, d.path, d.size_bytes) for d in changes]


# --- commit ---------------------------------------------------------------------------


def test_a_commit_takes_every_staged_write_and_delete(store: MetadataStore) -> None:
    _write(store, "main", a="1", b="22", c="333")
    first = _commit(store, "main")
    _write(store, "main", b="changed")
    store.delete_objects(REPO, "main", ["c"])
    assert _diff(store.diff_uncommitted(REPO, "main")) == [("changed", "b", 7), ("removed", "c", 0)]
    second = _commit(store, "main")
    assert second.parents == [first.id] and second.generation == first.generation + 1
    assert store.get_commit(REPO, first.id) == first  # an applied commit is history, never cleared as stale
    assert _files(store, second.id) == {"a": 1, "b": 7}
    assert store.diff_uncommitted(REPO, "main") == [] and not store.is_dirty(REPO, "main")


def test_a_commit_with_nothing_changed_is_refused_unless_empty_is_allowed(store: MetadataStore) -> None:
    _write(store, "main", a="1")
    head = _commit(store, "main")
    with pytest.raises(BadRequest, match="^commit: no changes$"):
        _commit(store, "main")
    store.stage_object(REPO, "main", _obj("a", "1"))  # the same object again is no change either
    with pytest.raises(BadRequest, match="^commit: no changes$"):
        _commit(store, "main")
    empty = _commit(store, "main", allow_empty=True)
    assert empty.parents == [head.id] and empty.tree_id == head.tree_id


def test_a_commit_keeps_its_metadata_date_and_every_path(store: MetadataStore) -> None:
    # "A" and "0" sort before lower-case letters: no path is left out by a default bound
    store.stage_object(REPO, "main", _obj("A.txt", "1", b="2", a="1"))
    _write(store, "main", **{"0": "zero", "z": "last"})
    first = store.apply_commit(store.prepare_commit(REPO, "main", message="m", metadata={"k": "v"}, committer="t",
                                                    allow_empty=False, date=1_700_000_000))
    assert (first.metadata, first.creation_date, first.creation_ns) == ({"k": "v"}, 1_700_000_000,
                                                                        1_700_000_000_000_000_000)
    _write(store, "main", y="1")
    _commit(store, "main")
    assert _files(store, "main") == {"0": 4, "A.txt": 1, "y": 1, "z": 4}
    entry = store.get_entry(REPO, store.resolve(REPO, "main"), "A.txt")
    assert entry is not None and entry.metadata == {"a": "1", "b": "2"}
    assert list(store.db.execute("SELECT path FROM staging")) == []  # metadata in any key order matched


def test_trees_are_shared_whatever_the_order_of_metadata_keys(store: MetadataStore) -> None:
    store.create_branch(REPO, "other", "main")
    store.stage_object(REPO, "main", _obj("x", "1", a="1", b="2"))
    store.stage_object(REPO, "other", _obj("x", "1", b="2", a="1"))
    assert _commit(store, "main").tree_id == _commit(store, "other").tree_id


def test_a_tree_read_with_a_prefix(store: MetadataStore) -> None:
    _write(store, "main", **{"d": "1", "d/x": "22", "dz": "333", "c": "4"})
    tree_id = _commit(store, "main").tree_id
    assert {p: e.size_bytes for p, e in store.tree(tree_id, "d/").items()} == {"d/x": 2}
    assert list(store.tree(tree_id, "d")) == ["d", "d/x", "dz"]
    assert list(store.tree(tree_id)) == ["c", "d", "d/x", "dz"]


def test_a_prepared_commit_left_behind_is_cleared_by_the_next_one(store: MetadataStore) -> None:
    _write(store, "main", a="1")
    left = store.prepare_commit(REPO, "main", message="m", metadata={}, committer="t", allow_empty=False)
    _commit(store, "main", message="again")  # the same staged write, committed for real this time
    with pytest.raises(NotFound):
        store.get_commit(REPO, left.commit.id)


def test_a_delete_of_a_path_a_refused_commit_would_have_added_leaves_nothing_behind(store: MetadataStore) -> None:
    _write(store, "main", a="1")
    _commit(store, "main")
    _write(store, "main", x="new")
    store.prepare_commit(REPO, "main", message="m", metadata={}, committer="t", allow_empty=False)
    store.delete_objects(REPO, "main", ["x"])  # a tombstone: the commit in flight adds x
    store.discard_prepared(REPO, "main")  # its pre-commit hook refused it
    _write(store, "main", b="2")
    _commit(store, "main")
    assert _files(store, "main") == {"a": 1, "b": 1}


def test_a_commit_of_a_moved_branch_is_refused(store: MetadataStore) -> None:
    _write(store, "main", a="1")
    pending = store.prepare_commit(REPO, "main", message="m", metadata={}, committer="t", allow_empty=False)
    _write(store, "main", b="2")
    moved = _commit(store, "main")
    with pytest.raises(Conflict, match="^main: branch moved during commit, try again$"):
        store.apply_commit(pending)
    assert store.branch_head(REPO, "main") == moved.id


def test_a_prepared_commit_that_is_discarded_is_gone(store: MetadataStore) -> None:
    _write(store, "main", a="1")
    pending = store.prepare_commit(REPO, "main", message="m", metadata={}, committer="t", allow_empty=False)
    store.discard_prepared(REPO, "main")
    with pytest.raises(NotFound):
        store.get_commit(REPO, pending.commit.id)
    assert _diff(store.diff_uncommitted(REPO, "main")) == [("added", "a", 1)]  # still staged


# --- delete ---------------------------------------------------------------------------


def test_a_committed_delete_leaves_nothing_staged_and_the_path_can_come_back(store: MetadataStore) -> None:
    _write(store, "main", a="1", b="2")
    _commit(store, "main")
    store.delete_objects(REPO, "main", ["a"])
    _commit(store, "main")
    assert list(store.db.execute("SELECT path FROM staging")) == []  # the tombstone went with the commit
    store.create_branch(REPO, "feature", "main")
    _write(store, "feature", a="new")  # the path comes back from another branch
    _commit(store, "feature")
    _merge(store, "feature", "main")
    assert _files(store, "main") == {"a": 3, "b": 1}


def test_deleting_a_path_only_staged_unstages_it_and_leaves_no_tombstone(store: MetadataStore) -> None:
    _write(store, "main", a="1")
    _commit(store, "main")
    _write(store, "main", b="2")
    store.delete_objects(REPO, "main", ["b", "never-existed"])
    assert store.diff_uncommitted(REPO, "main") == [] and not store.is_dirty(REPO, "main")
    assert list(store.db.execute("SELECT path FROM staging")) == []


def test_a_delete_while_a_commit_is_in_flight_holds_once_it_lands(store: MetadataStore) -> None:
    _write(store, "main", a="1", b="2")
    pending = store.prepare_commit(REPO, "main", message="m", metadata={}, committer="t", allow_empty=False)
    store.delete_objects(REPO, "main", ["a"])  # while the pre-commit hooks run
    store.apply_commit(pending)
    assert _files(store, "main") == {"b": 1}
    assert _diff(store.diff_uncommitted(REPO, "main")) == [("removed", "a", 0)]


# --- reset ----------------------------------------------------------------------------


def test_reset_of_everything_one_object_or_one_prefix(store: MetadataStore) -> None:
    _write(store, "main", **{"d/x": "1"})
    _commit(store, "main")
    _write(store, "main", **{"d/y": "2", "d/z": "3", "e/y": "4"})
    store.delete_objects(REPO, "main", ["d/x"])
    store.reset_branch(REPO, "main", "object", "d/y")
    assert [d.path for d in store.diff_uncommitted(REPO, "main")] == ["d/x", "d/z", "e/y"]
    store.reset_branch(REPO, "main", "common_prefix", "d/")
    assert [d.path for d in store.diff_uncommitted(REPO, "main")] == ["e/y"]
    store.reset_branch(REPO, "main", "reset", None)
    assert store.diff_uncommitted(REPO, "main") == []
    assert _files(store, "main") == {"d/x": 1}


@pytest.mark.parametrize(("kind", "path", "message"), [
    ("object", None, "argument path: missing path: required value: validation error"),
    ("common_prefix", "", "argument path: missing path: required value: validation error"),
    ("everything", None, "argument type: invalid value: validation error"),
])
def test_a_reset_with_a_bad_kind_or_no_path_is_refused(store: MetadataStore, kind: str, path: str | None,
                                                       message: str) -> None:
    with pytest.raises(BadRequest) as raised:
        store.reset_branch(REPO, "main", kind, path)
    assert str(raised.value) == message


@pytest.mark.parametrize(("kind", "path"), [("object", "a"), ("common_prefix", "a"), ("reset", None)])
def test_a_reset_while_a_commit_is_in_flight_holds_once_it_lands(store: MetadataStore, kind: str,
                                                                 path: str | None) -> None:
    _write(store, "main", a="1")
    _commit(store, "main")
    _write(store, "main", a="changed", another="x")
    pending = store.prepare_commit(REPO, "main", message="m", metadata={}, committer="t", allow_empty=False)
    store.reset_branch(REPO, "main", kind, path)  # while the pre-commit hooks run
    store.apply_commit(pending)
    # the commit landed, and the reset's "a is what the old head had" still shows on the branch
    files = _files(store, "main")
    assert files["a"] == 1
    assert ("changed", "a", 1) in _diff(store.diff_uncommitted(REPO, "main"))
    # "another" was added by the commit in flight: a reset that covers it removes it again
    assert ("another" in files) == (kind == "object")


def test_a_prefix_reset_while_a_commit_is_in_flight_keeps_what_is_outside_the_prefix(store: MetadataStore) -> None:
    _write(store, "main", **{"a": "1", "d/x": "2", "e/y": "3"})
    _commit(store, "main")
    _write(store, "main", **{"a": "changed", "d/x": "changed", "d/z": "new", "e/y": "changed"})
    pending = store.prepare_commit(REPO, "main", message="m", metadata={}, committer="t", allow_empty=False)
    store.reset_branch(REPO, "main", "common_prefix", "d/")
    store.apply_commit(pending)
    assert _files(store, "main") == {"a": 7, "d/x": 1, "e/y": 7}  # only d/ is back to the old head


# --- merge ----------------------------------------------------------------------------


def _two_branches(store: MetadataStore, **base: str) -> Commit:
    _write(store, "main", **base)
    root = _commit(store, "main")
    store.create_branch(REPO, "feature", "main")
    return root


def test_a_merge_brings_the_source_changes_and_keeps_the_destination_ones(store: MetadataStore) -> None:
    _two_branches(store, a="1", b="2", c="3")
    _write(store, "feature", a="feature")
    store.delete_objects(REPO, "feature", ["b"])
    source = _commit(store, "feature")
    _write(store, "main", c="main-side")
    dest = _commit(store, "main")
    assert _diff(store.diff_refs(REPO, "main", "feature", "three_dot")) == [("changed", "a", 7), ("removed", "b", 1)]
    merged = _merge(store, "feature", "main", metadata={"k": "v"})
    assert merged.parents == [dest.id, source.id]
    assert merged.message == "Merge 'feature' into 'main'"
    assert merged.metadata == {"k": "v", ".lakefs.merge.strategy": "default"}
    assert merged.generation == max(dest.generation, source.generation) + 1
    assert _files(store, "main") == {"a": 7, "c": 9}


def test_a_three_dot_diff_shows_added_paths_and_keeps_to_its_prefix(store: MetadataStore) -> None:
    _two_branches(store, a="1", **{"d/x": "2"})
    _write(store, "feature", a="changed", **{"d/new": "333", "d/x": "22"})
    _commit(store, "feature")
    assert _diff(store.diff_refs(REPO, "main", "feature", "three_dot")) == [
        ("changed", "a", 7), ("added", "d/new", 3), ("changed", "d/x", 2)]
    assert _diff(store.diff_refs(REPO, "main", "feature", "three_dot", "d/")) == [
        ("added", "d/new", 3), ("changed", "d/x", 2)]


def test_merge_trees_names_the_conflicting_paths() -> None:
    from sluice.lakefs_server.metadata.merging import merge_trees

    base, ours, theirs = {"a": _obj("a", "1")}, {"a": _obj("a", "ours")}, {"a": _obj("a", "theirs"), "b": _obj("b", "2")}
    merged, conflicts = merge_trees(base, ours, theirs, None)
    assert conflicts == ["a"] and merged == {"a": ours["a"], "b": theirs["b"]}
    assert merge_trees(base, ours, theirs, "source-wins") == (theirs, [])
    assert merge_trees(base, ours, theirs, "dest-wins") == ({"a": ours["a"], "b": theirs["b"]}, [])


def test_the_same_change_on_both_sides_is_no_conflict(store: MetadataStore) -> None:
    _two_branches(store, a="1")
    for branch in ("feature", "main"):
        _write(store, branch, a="same edit")
        _commit(store, branch)
    _write(store, "feature", b="more")  # so the merge has something to bring
    _commit(store, "feature")
    _merge(store, "feature", "main")
    assert _files(store, "main") == {"a": 9, "b": 4}


def test_different_changes_to_one_path_conflict_unless_a_strategy_settles_them(store: MetadataStore) -> None:
    _two_branches(store, a="1")
    _write(store, "feature", a="feature edit")
    _commit(store, "feature")
    _write(store, "main", a="main")
    head = _commit(store, "main")
    assert _diff(store.diff_refs(REPO, "main", "feature", "three_dot")) == [("conflict", "a", None)]
    with pytest.raises(MergeConflict, match="^update branch main: conflict found$"):
        _merge(store, "feature", "main")
    assert store.branch_head(REPO, "main") == head.id
    _merge(store, "feature", "main", strategy="dest-wins")
    assert _files(store, "main") == {"a": 4}
    _write(store, "feature", a="feature again")
    _commit(store, "feature")
    _write(store, "main", a="main again")
    _commit(store, "main")
    merged = _merge(store, "feature", "main", strategy="source-wins")
    assert _files(store, "main") == {"a": 13}
    assert merged.metadata[".lakefs.merge.strategy"] == "source-wins"


def test_a_conflicting_delete_settled_for_the_source_deletes(store: MetadataStore) -> None:
    _two_branches(store, a="1", b="2")
    store.delete_objects(REPO, "feature", ["a"])
    _commit(store, "feature")
    _write(store, "main", a="main edit")
    _commit(store, "main")
    _merge(store, "feature", "main", strategy="source-wins")
    assert _files(store, "main") == {"b": 1}


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"strategy": "ours"}, BadRequest, "argument strategy: invalid value: validation error"),
    ({}, BadRequest, "update branch main: no changes"),
])
def test_merges_that_are_refused(store: MetadataStore, options: dict, error: type, message: str) -> None:
    _two_branches(store, a="1")
    with pytest.raises(error) as raised:
        _merge(store, "feature", "main", **options)
    assert str(raised.value) == message


def test_an_empty_strategy_is_the_default_one(store: MetadataStore) -> None:
    _two_branches(store, a="1")
    _write(store, "feature", b="2")
    source = _commit(store, "feature")
    pending = store.prepare_merge(REPO, "feature", "main", message=None, metadata={}, strategy="", committer="t",
                                  allow_empty=False, squash=False)
    assert pending.source_commit_id == source.id  # what the pre-merge hooks are told
    assert store.apply_merge(pending).metadata == {".lakefs.merge.strategy": "default"}


def test_a_merge_clears_a_commit_left_prepared_and_is_itself_no_longer_pending(store: MetadataStore) -> None:
    _two_branches(store, a="1")
    _write(store, "main", c="3")
    left = store.prepare_commit(REPO, "main", message="m", metadata={}, committer="t", allow_empty=False)
    store.reset_branch(REPO, "main", "reset", None)  # its hook refused it; nothing was discarded
    _write(store, "feature", b="2")
    _commit(store, "feature")
    merged = _merge(store, "feature", "main")
    with pytest.raises(NotFound):
        store.get_commit(REPO, left.commit.id)  # a prepared commit that never landed is not readable
    _write(store, "main", d="4")
    later = _commit(store, "main")  # the next commit clears what is still prepared: not the merge
    assert store.get_commit(REPO, merged.id).id == merged.id and later.parents == [merged.id]


def test_an_empty_merge_when_allowed_and_a_squash_with_one_parent(store: MetadataStore) -> None:
    _two_branches(store, a="1")
    head = store.branch_head(REPO, "main")
    empty = _merge(store, "feature", "main", allow_empty=True, message="sync")
    assert empty.message == "sync" and len(empty.parents) == 2
    _write(store, "feature", b="2")
    _commit(store, "feature")
    squashed = _merge(store, "feature", "main", squash=True)
    assert squashed.parents == [empty.id] and empty.parents[0] == head
    assert _files(store, "main") == {"a": 1, "b": 1}


def test_a_merge_into_a_dirty_branch_or_from_nowhere_is_refused(store: MetadataStore) -> None:
    _two_branches(store, a="1")
    _write(store, "feature", b="2")
    _commit(store, "feature")
    with pytest.raises(NotFound) as raised:
        _merge(store, "nowhere", "main")
    assert str(raised.value) == "update branch main: get commit by ref nowhere: not found"
    _write(store, "main", c="3")
    with pytest.raises(BadRequest, match=r"^uncommitted changes \(dirty branch\)$"):
        _merge(store, "feature", "main")


def test_a_merge_is_refused_when_the_destination_moved_or_got_dirty_before_it_applied(store: MetadataStore) -> None:
    _two_branches(store, a="1")
    _write(store, "feature", b="2")
    _commit(store, "feature")
    pending = store.prepare_merge(REPO, "feature", "main", message=None, metadata={}, strategy=None, committer="t",
                                  allow_empty=False, squash=False)
    _write(store, "main", c="3")
    with pytest.raises(BadRequest, match=r"^uncommitted changes \(dirty branch\)$"):
        store.apply_merge(pending)
    _commit(store, "main")
    with pytest.raises(Conflict, match="^update branch main: branch moved during merge, try again$"):
        store.apply_merge(pending)


def test_staged_rows_that_repeat_the_head_are_dropped_when_a_merge_lands(store: MetadataStore) -> None:
    _two_branches(store, a="1")
    _write(store, "feature", b="2")
    _commit(store, "feature")
    store.stage_object(REPO, "main", _obj("a", "1"))  # the head's own object: not a change
    assert not store.is_dirty(REPO, "main")
    _merge(store, "feature", "main")
    assert list(store.db.execute("SELECT path FROM staging WHERE branch='main'")) == []


# --- diffs ----------------------------------------------------------------------------


def test_two_dot_diff_with_a_prefix_and_unknown_diff_types(store: MetadataStore) -> None:
    _write(store, "main", **{"d/a": "1", "d/b": "22", "e": "333"})
    left = _commit(store, "main")
    _write(store, "main", **{"d/a": "1111", "d/c": "5", "e": "x"})
    store.delete_objects(REPO, "main", ["d/b"])
    right = _commit(store, "main")
    assert store.diff_refs(REPO, left.id, left.id, "two_dot") == []
    assert _diff(store.diff_refs(REPO, left.id, right.id, "two_dot", "d/")) == [
        ("changed", "d/a", 4), ("removed", "d/b", 2), ("added", "d/c", 1)]
    with pytest.raises(BadRequest, match="^argument type: invalid value: validation error$"):
        store.diff_refs(REPO, left.id, right.id, "one_dot")


def test_uncommitted_diff_with_a_prefix(store: MetadataStore) -> None:
    _write(store, "main", **{"d": "0", "d/a": "1", "e": "2", "c": "3"})
    assert _diff(store.diff_uncommitted(REPO, "main", "d/")) == [("added", "d/a", 1)]
    assert _diff(store.diff_uncommitted(REPO, "main", "d")) == [("added", "d", 1), ("added", "d/a", 1)]
