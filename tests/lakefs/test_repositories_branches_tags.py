"""Repositories, branches and tags on the embedded server, through the
official ``lakefs`` SDK only."""

from __future__ import annotations

import lakefs
import pytest
from lakefs.exceptions import (
    BadRequestException,
    ConflictException,
    ForbiddenException,
    NotFoundException,
)

from tests.conftest import unique_name


def test_repository_create_get_list_delete(lakefs_client):
    name = unique_name("repo")
    repo = lakefs.Repository(name, client=lakefs_client).create(storage_namespace=f"local://{name}")
    props = repo.properties
    assert (props.id, props.default_branch, props.storage_namespace) == (name, "main", f"local://{name}")
    # a new repository starts with lakeFS's initial commit on its default branch
    first = repo.branch("main").get_commit()
    assert first.message == "Repository created" and first.parents == []

    listed = [r.properties.id for r in lakefs.repositories(client=lakefs_client, prefix=name)]
    assert listed == [name]

    # exist_ok returns the existing repository; without it, a conflict
    again = lakefs.Repository(name, client=lakefs_client).create(storage_namespace=f"local://{name}", exist_ok=True)
    assert again.properties.id == name
    with pytest.raises(ConflictException):
        lakefs.Repository(name, client=lakefs_client).create(storage_namespace=f"local://{name}-other")

    repo.delete()
    with pytest.raises(NotFoundException) as missing:
        lakefs.Repository(name, client=lakefs_client).properties
    assert missing.value.body["message"] == "repository not found"


def test_repository_with_custom_default_branch(lakefs_client):
    name = unique_name("repo")
    repo = lakefs.Repository(name, client=lakefs_client).create(
        storage_namespace=f"local://{name}", default_branch="trunk"
    )
    assert repo.properties.default_branch == "trunk"
    assert [b.id for b in repo.branches()] == ["trunk"]


@pytest.mark.parametrize("bad_name", ["UPPER", "ab", "has_underscore", "-starts-with-dash", "x" * 64])
def test_invalid_repository_names_are_rejected_by_the_server(lakefs_client, bad_name):
    import lakefs_sdk

    # The SDK also checks names client-side; send an unchecked model to test the server.
    creation = lakefs_sdk.RepositoryCreation.construct(name=bad_name, storage_namespace=f"local://{unique_name()}")
    with pytest.raises(lakefs_sdk.ApiException) as err:
        lakefs_client.sdk_client.repositories_api.create_repository(creation)
    assert err.value.status == 400
    assert "name" in err.value.body


def test_storage_namespace_must_fit_the_blockstore_and_be_unused(lakefs_client):
    with pytest.raises(BadRequestException) as wrong_scheme:
        lakefs.Repository(unique_name(), client=lakefs_client).create(storage_namespace="s3://bucket/x")
    assert "invalid namespace" in wrong_scheme.value.body["message"]
    name = unique_name()
    lakefs.Repository(name, client=lakefs_client).create(storage_namespace=f"local://{name}")
    with pytest.raises(BadRequestException) as in_use:
        lakefs.Repository(unique_name(), client=lakefs_client).create(storage_namespace=f"local://{name}")
    assert "already in use" in in_use.value.body["message"]


def test_branch_from_branch_tag_commit_and_ref_expressions(repo):
    main = repo.branch("main")
    main.object("a.txt").upload(b"one")
    first = main.commit("first")
    main.object("a.txt").upload(b"two")
    second = main.commit("second")
    repo.tag("v1").create(first.id)

    assert repo.branch("from-branch").create("main").head.id == second.id
    assert repo.branch("from-tag").create("v1").head.id == first.id
    assert repo.branch("from-commit").create(first.id).head.id == first.id
    assert repo.branch("from-short-id").create(first.id[:12]).head.id == first.id
    assert repo.branch("from-tilde").create("main~1").head.id == first.id
    assert repo.branch("from-caret").create("main^1").head.id == first.id
    assert repo.branch("from-tag").object("a.txt").reader().read() == b"one"

    with pytest.raises(NotFoundException) as unknown:
        repo.branch("from-nowhere").create("no-such-ref")
    assert unknown.value.body["message"] == "source reference 'no-such-ref': not found"
    with pytest.raises(ConflictException):
        repo.branch("from-branch").create("main")
    # exist_ok keeps the existing branch where it is
    assert repo.branch("from-tag").create("main", exist_ok=True).head.id == first.id


@pytest.mark.parametrize("bad_name", ["with/slash", "-dash-first", "sp ace", "dot.name", "a~1"])
def test_invalid_branch_names_are_rejected(repo, bad_name):
    with pytest.raises(BadRequestException) as err:
        repo.branch(bad_name).create("main")
    assert "branch id" in err.value.body["message"]


def test_branch_listing_pages_through_more_than_one_page(repo):
    names = sorted(f"b{i:03d}" for i in range(105))  # the server's page is 100
    for name in names:
        repo.branch(name).create("main")
    listed = [b.id for b in repo.branches()]
    assert listed == sorted([*names, "main"])
    assert [b.id for b in repo.branches(prefix="b10")] == ["b100", "b101", "b102", "b103", "b104"]
    assert [b.id for b in repo.branches(after="b103")] == ["b104", "main"]
    assert len(list(repo.branches(max_amount=7))) == 7


def test_delete_branch_but_never_the_default(repo):
    feature = repo.branch("feature").create("main")
    feature.object("x").upload(b"staged")
    feature.delete()
    with pytest.raises(NotFoundException) as gone:
        repo.branch("feature").head
    assert gone.value.body["message"] == "branch not found"
    with pytest.raises(ForbiddenException) as default:
        repo.branch("main").delete()
    assert default.value.body["message"] == "cannot delete repository default branch"
    # a recreated branch does not see the old branch's staged object
    assert not repo.branch("feature").create("main").object("x").exists()


def test_tags_create_list_read_delete(repo):
    main = repo.branch("main")
    main.object("data.csv").upload(b"a,b\n1,2\n")
    commit = main.commit("data")
    main.object("data.csv").upload(b"a,b\n3,4\n")
    main.commit("newer data")

    tag = repo.tag("release-1").create("main~1")
    assert tag.get_commit().id == commit.id
    assert repo.ref("release-1").object("data.csv").reader().read() == b"a,b\n1,2\n"
    repo.tag("release-2").create("main")
    assert [t.id for t in repo.tags()] == ["release-1", "release-2"]
    assert [t.id for t in repo.tags(prefix="release-2")] == ["release-2"]

    with pytest.raises(ConflictException) as exists:
        repo.tag("release-1").create("main")
    assert exists.value.body["message"] == "tag already exists: not unique"
    with pytest.raises(ConflictException):
        repo.tag("main").create("main")  # a tag may not shadow a branch

    repo.tag("release-1").delete()
    with pytest.raises(NotFoundException):
        repo.tag("release-1").get_commit()


@pytest.mark.parametrize("bad_tag", ["has space", "a..b", "with/slash", "ends.", "x^y", "@"])
def test_invalid_tag_names_are_rejected(repo, bad_tag):
    with pytest.raises(BadRequestException):
        repo.tag(bad_tag).create("main")
