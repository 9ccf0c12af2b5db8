"""Commits, log, ref expressions, diff and merge on the embedded server,
through the official SDK, with lakeFS's semantics."""

from __future__ import annotations

import json

import pytest
from lakefs.exceptions import BadRequestException, ConflictException, NotFoundException


def _read(repo, ref: str, path: str) -> bytes:
    return repo.ref(ref).object(path).reader().read()


def test_commit_records_metadata_parents_and_generation(repo):
    main = repo.branch("main")
    root = main.get_commit()
    main.object("a").upload(data=b"1")
    ref = main.commit(message="add a", metadata={"flow_run": "abc", "rows": "3"})
    commit = ref.get_commit()
    assert commit.message == "add a"
    assert commit.metadata == {"flow_run": "abc", "rows": "3"}
    assert commit.parents == [root.id]
    assert len(commit.id) == 64 and commit.meta_range_id
    assert commit.committer == "admin"
    assert main.head.id == commit.id
    assert list(main.uncommitted()) == []
    # the same commit by branch, by id, by short id and via the tag
    repo.tag("t1").create(commit.id)
    for ref_name in ("main", commit.id, commit.id[:10], "t1"):
        assert repo.ref(ref_name).get_commit().id == commit.id


def test_commit_with_no_changes_needs_allow_empty(repo, lakefs_client):
    import lakefs_sdk

    main = repo.branch("main")
    with pytest.raises(BadRequestException):
        main.commit(message="nothing")
    with pytest.raises(lakefs_sdk.ApiException) as err:  # the generated client keeps lakeFS's message
        lakefs_client.sdk_client.commits_api.commit(repo.id, "main", lakefs_sdk.CommitCreation(message="nothing"))
    assert json.loads(err.value.body) == {"message": "commit: no changes"}
    before = main.get_commit()
    empty = main.commit(message="marker", allow_empty=True).get_commit()
    assert empty.parents == [before.id] and empty.meta_range_id == before.meta_range_id


def test_log_is_newest_first_and_pages(repo):
    main = repo.branch("main")
    ids = []
    for i in range(104):  # more than one page of 100
        ids.append(main.commit(message=f"c{i}", allow_empty=True).get_commit().id)
    log = [c.id for c in main.log()]
    assert log[:104] == list(reversed(ids))
    assert [c.message for c in main.log()][-1] == "Repository created"
    assert [c.id for c in main.log(max_amount=3)] == list(reversed(ids))[:3]


def test_ref_expressions_walk_parents(repo):
    main = repo.branch("main")
    c1 = main.commit("c1", allow_empty=True).get_commit()
    c2 = main.commit("c2", allow_empty=True).get_commit()
    c3 = main.commit("c3", allow_empty=True).get_commit()
    assert repo.ref("main~1").get_commit().id == c2.id
    assert repo.ref("main~2").get_commit().id == c1.id
    assert repo.ref(f"{c3.id}^").get_commit().id == c2.id
    assert repo.ref("main~1^1").get_commit().id == c1.id
    with pytest.raises(NotFoundException):
        repo.ref("main~50").get_commit()


def test_merge_never_fast_forwards_and_records_both_parents(repo):
    main = repo.branch("main")
    main_head = main.head.id
    feature = repo.branch("feature").create("main")
    feature.object("new.txt").upload(data=b"from feature")
    feature_commit = feature.commit("feature work").get_commit()

    merge_id = feature.merge_into(main, message="bring feature in", metadata={"why": "test"})
    merged = repo.commit(merge_id).get_commit()
    assert merged.parents == [main_head, feature_commit.id]
    assert merged.message == "bring feature in"
    assert merged.metadata == {"why": "test", ".lakefs.merge.strategy": "default"}
    assert main.head.id == merge_id
    assert _read(repo, "main", "new.txt") == b"from feature"

    # merging again brings nothing: lakeFS answers 400 "no changes"
    with pytest.raises(BadRequestException):
        feature.merge_into(main)


def test_three_way_merge_keeps_both_sides_changes(repo):
    main = repo.branch("main")
    for name in ("shared", "mine", "theirs"):
        main.object(name).upload(data=b"base")
    main.commit("base")
    feature = repo.branch("feature").create("main")
    feature.object("theirs").upload(data=b"feature")
    feature.object("shared").delete()
    feature.object("feature-only").upload(data=b"new")
    feature.commit("feature changes")
    main.object("mine").upload(data=b"main")
    main.commit("main changes")

    # the three-dot diff shows what the merge would bring
    assert {(c.type, c.path) for c in repo.ref("main").diff("feature")} == {
        ("changed", "theirs"), ("removed", "shared"), ("added", "feature-only")
    }
    feature.merge_into(main)
    assert sorted(o.path for o in main.objects()) == ["feature-only", "mine", "theirs"]
    assert (_read(repo, "main", "mine"), _read(repo, "main", "theirs")) == (b"main", b"feature")


def test_conflicting_merge_answers_409_and_changes_nothing(repo, lakefs_client):
    import lakefs_sdk

    main = repo.branch("main")
    main.object("config.yaml").upload(data=b"v: 0")
    main.commit("base")
    feature = repo.branch("feature").create("main")
    feature.object("config.yaml").upload(data=b"v: feature")
    feature.object("extra").upload(data=b"extra")
    feature.commit("feature edit")
    main.object("config.yaml").upload(data=b"v: main")
    head = main.commit("main edit").get_commit().id

    assert ("conflict", "config.yaml") in {(c.type, c.path) for c in repo.ref("main").diff("feature")}
    with pytest.raises(ConflictException):
        feature.merge_into(main)
    with pytest.raises(lakefs_sdk.ApiException) as raw:
        lakefs_client.sdk_client.refs_api.merge_into_branch(repo.id, "feature", "main")
    assert raw.value.status == 409
    assert json.loads(raw.value.body)["message"] == "update branch main: conflict found"
    assert main.head.id == head
    assert not main.object("extra").exists()
    assert _read(repo, "main", "config.yaml") == b"v: main"


@pytest.mark.parametrize(("strategy", "expected"), [("source-wins", b"v: feature"), ("dest-wins", b"v: main")])
def test_merge_strategies_resolve_conflicts(repo, strategy, expected):
    main = repo.branch("main")
    main.object("config.yaml").upload(data=b"v: 0")
    main.commit("base")
    feature = repo.branch("feature").create("main")
    feature.object("config.yaml").upload(data=b"v: feature")
    feature.object("extra").upload(data=b"extra")
    feature.commit("feature edit")
    main.object("config.yaml").upload(data=b"v: main")
    main.commit("main edit")

    merge_id = feature.merge_into(main, strategy=strategy)
    assert _read(repo, "main", "config.yaml") == expected
    assert _read(repo, "main", "extra") == b"extra"  # non-conflicting changes always merge
    assert repo.commit(merge_id).get_commit().metadata[".lakefs.merge.strategy"] == strategy


def test_merge_into_a_dirty_branch_is_refused(repo):
    main = repo.branch("main")
    feature = repo.branch("feature").create("main")
    feature.object("f").upload(data=b"f")
    feature.commit("f")
    main.object("uncommitted").upload(data=b"dirty")
    with pytest.raises(BadRequestException):
        feature.merge_into(main)
    assert not repo.ref("main@").object("f").exists()


def test_merge_takes_the_sources_committed_state_only(repo):
    main = repo.branch("main")
    feature = repo.branch("feature").create("main")
    feature.object("committed").upload(data=b"c")
    feature.commit("c")
    feature.object("staged-only").upload(data=b"s")
    feature.merge_into(main)
    assert main.object("committed").exists()
    assert not main.object("staged-only").exists()


def test_two_dot_diff_compares_trees_directly(repo):
    main = repo.branch("main")
    main.object("a").upload(data=b"1")
    first = main.commit("1").get_commit()
    main.object("a").upload(data=b"2")
    main.object("b").upload(data=b"2")
    second = main.commit("2").get_commit()
    changes = {(c.type, c.path) for c in repo.ref(first.id).diff(second.id, type="two_dot")}
    assert changes == {("changed", "a"), ("added", "b")}
    backwards = {(c.type, c.path) for c in repo.ref(second.id).diff(first.id, type="two_dot")}
    assert backwards == {("changed", "a"), ("removed", "b")}


def test_transactions_merge_through_a_hidden_branch(repo):
    main = repo.branch("main")
    with main.transact(commit_message="atomic batch") as tx:
        tx.object("x").upload(data=b"x")
        tx.object("y").upload(data=b"y")
    assert sorted(o.path for o in main.objects()) == ["x", "y"]
    assert [b.id for b in repo.branches()] == ["main"]  # the transaction branch is gone
    assert "atomic batch" in [c.message for c in main.log(max_amount=3)]


def test_log_filtered_to_objects_and_prefixes(repo):
    main = repo.branch("main")
    main.object("data/a.csv").upload(data=b"1")
    touches_a = main.commit("a").get_commit().id
    main.object("docs/readme").upload(data=b"r")
    main.commit("docs")
    main.object("data/b.csv").upload(data=b"2")
    touches_b = main.commit("b").get_commit().id
    main.object("data/a.csv").upload(data=b"1")  # same bytes: not a change
    main.commit("no-op rewrite", allow_empty=True)

    assert [c.id for c in main.log(objects=["data/a.csv"])] == [touches_a]
    assert [c.id for c in main.log(prefixes=["data/"])] == [touches_b, touches_a]
    assert [c.message for c in main.log(prefixes=["docs/"])] == ["docs"]


def test_the_same_change_on_both_sides_merges_cleanly(repo):
    main = repo.branch("main")
    main.object("config.yaml").upload(data=b"v: 0")
    main.object("old.txt").upload(data=b"old")
    main.commit("base")
    feature = repo.branch("feature").create("main")
    for branch in (main, feature):  # identical edits, adds and deletes on both branches
        branch.object("config.yaml").upload(data=b"v: 1")
        branch.object("added.txt").upload(data=b"same")
        branch.object("old.txt").delete()
    feature.object("feature-only").upload(data=b"f")
    feature.commit("feature: the shared change and one more")
    main.commit("main: the shared change")

    assert [(c.type, c.path) for c in repo.ref("main").diff("feature")] == [("added", "feature-only")]
    feature.merge_into(main)  # the default strategy: a conflict would raise ConflictException
    assert sorted(o.path for o in main.objects()) == ["added.txt", "config.yaml", "feature-only"]
    assert _read(repo, "main", "config.yaml") == b"v: 1"


def test_a_committed_delete_leaves_nothing_staged(repo):
    main = repo.branch("main")
    main.object("data.csv").upload(data=b"v1")
    main.commit("add")
    main.object("data.csv").delete()
    main.commit("delete")
    assert list(main.uncommitted()) == []
    assert not main.object("data.csv").exists()

    # the path comes back through a merge: the deletion committed before must not hide it
    feature = repo.branch("feature").create("main")
    feature.object("data.csv").upload(data=b"v2")
    feature.commit("restore")
    feature.merge_into(main)
    assert _read(repo, "main", "data.csv") == b"v2"
    assert [o.path for o in main.objects()] == ["data.csv"]
