"""Objects on the embedded server through the official SDK: upload (chunked
bodies, metadata), read (ranges), stat, exists, list, delete, uncommitted
diff — and object paths can never reach outside the data directory."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from lakefs.exceptions import NotFoundException, ObjectExistsException, ObjectNotFoundException, ServerException


def test_upload_stat_and_read_back(repo):
    branch = repo.branch("main")
    data = b"id,text\n1,hello\n"
    obj = branch.object("tables/t.csv").upload(data=data, content_type="text/csv", metadata={"owner": "data-team"})
    stats = obj.stat()
    assert stats.path == "tables/t.csv"
    assert stats.size_bytes == len(data)
    assert stats.checksum == hashlib.md5(data).hexdigest()  # lakeFS reports the MD5 (ETag)
    assert stats.content_type == "text/csv"
    assert stats.metadata == {"owner": "data-team"}
    assert stats.mtime > 0
    assert branch.object("tables/t.csv").reader().read() == data
    assert branch.object("tables/t.csv").exists()
    assert not branch.object("tables/missing.csv").exists()


def test_default_content_type_and_empty_object(repo):
    branch = repo.branch("main")
    assert branch.object("blob").upload(data=b"\x00\x01").stat().content_type == "application/octet-stream"
    empty = branch.object("empty").upload(data=b"")
    assert empty.stat().size_bytes == 0
    assert branch.object("empty").reader().read() == b""


def test_large_object_streams_in_chunks_and_reads_ranges(repo):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    branch = repo.branch("main")
    with branch.object("big.bin").writer(mode="wb") as writer:  # the SDK sends a chunked body
        for start in range(0, len(payload), 1 << 20):
            writer.write(payload[start:start + (1 << 20)])
    assert branch.object("big.bin").stat().size_bytes == len(payload)
    assert branch.object("big.bin").reader().read() == payload

    with branch.object("big.bin").reader() as reader:
        assert reader.read(10) == payload[:10]  # Range: bytes=0-9
        reader.seek(1_000_000)
        assert reader.read(5) == payload[1_000_000:1_000_005]
        reader.seek(len(payload) - 3)
        assert reader.read(100) == payload[-3:]  # a range past the end is clamped
        assert reader.read(10) == b""  # and past the end is end of file


def test_exclusive_create_refuses_an_existing_path(repo):
    branch = repo.branch("main")
    branch.object("once").upload(data=b"first", mode="x")
    with pytest.raises(ObjectExistsException):
        branch.object("once").upload(data=b"second", mode="x")
    assert branch.object("once").reader().read() == b"first"


def test_missing_objects_refs_and_branches_are_404(repo, lakefs_client):
    import lakefs_sdk

    with pytest.raises(ObjectNotFoundException):
        repo.branch("main").object("nope").reader().read()
    with pytest.raises(ObjectNotFoundException):
        repo.branch("main").object("nope").stat()
    # the wrapper drops the body of object errors; the generated client keeps it
    with pytest.raises(lakefs_sdk.ApiException) as stat:
        lakefs_client.sdk_client.objects_api.stat_object(repo.id, "main", "nope")
    assert (stat.value.status, json.loads(stat.value.body)) == (404, {"message": "not found"})
    with pytest.raises(NotFoundException):
        repo.ref("no-such-ref").object("x").stat()
    with pytest.raises(NotFoundException) as upload:
        repo.branch("no-such-branch").object("x").upload(data=b"x")
    assert upload.value.body["message"] == "branch 'no-such-branch' not found"


def test_listing_with_prefix_delimiter_and_pages(repo):
    branch = repo.branch("main")
    paths = [f"data/part-{i:03d}.json" for i in range(130)] + ["data/sub/a.json", "data/sub/b.json", "top.txt"]
    for path in paths:
        branch.object(path).upload(data=path.encode())
    branch.commit("many objects")

    everything = [o.path for o in branch.objects()]
    assert everything == sorted(paths)  # pages of 100, in byte order

    shallow = [(o.path, type(o).__name__) for o in branch.objects(prefix="data/", delimiter="/")]
    assert shallow[-1] == ("data/sub/", "CommonPrefix")
    assert len(shallow) == 131 and all(kind == "ObjectInfo" for _, kind in shallow[:-1])
    top = [(o.path, type(o).__name__) for o in branch.objects(delimiter="/")]
    assert top == [("data/", "CommonPrefix"), ("top.txt", "ObjectInfo")]

    after = [o.path for o in branch.objects(prefix="data/part-12", after="data/part-127.json")]
    assert after == ["data/part-128.json", "data/part-129.json"]
    assert len(list(branch.objects(max_amount=5))) == 5


def test_listing_overlays_uncommitted_writes_and_deletes(repo):
    branch = repo.branch("main")
    for name in ("a", "b", "c"):
        branch.object(name).upload(data=name.encode())
    commit = branch.commit("abc")
    branch.object("b").delete()
    branch.object("d").upload(data=b"d")
    branch.object("a").upload(data=b"A")

    assert [o.path for o in branch.objects()] == ["a", "c", "d"]
    assert branch.object("a").reader().read() == b"A"
    # the commit, and the branch's committed state (`main@`), are unchanged
    assert [o.path for o in repo.ref(commit.id).objects()] == ["a", "b", "c"]
    assert repo.ref("main@").object("a").reader().read() == b"a"
    assert {(c.type, c.path) for c in branch.uncommitted()} == {("removed", "b"), ("added", "d"), ("changed", "a")}


def test_delete_one_and_many_objects(repo):
    branch = repo.branch("main")
    for i in range(5):
        branch.object(f"f{i}").upload(data=b"x")
    branch.commit("five files")
    branch.object("f0").delete()
    branch.object("never-existed").delete()  # not an error, as in lakeFS
    branch.delete_objects(["f1", "f2", "also-missing"])
    assert [o.path for o in branch.objects()] == ["f3", "f4"]
    branch.commit("deleted three")
    assert [o.path for o in repo.ref("main").objects()] == ["f3", "f4"]


def test_rejects_too_many_paths_in_a_batch_delete(repo):
    with pytest.raises(ServerException) as err:
        repo.branch("main").delete_objects([f"p{i}" for i in range(1001)])
    assert err.value.status_code == 400


def test_uncommitted_diff_ignores_identical_rewrites(repo):
    branch = repo.branch("main")
    branch.object("same").upload(data=b"content", content_type="text/plain")
    branch.commit("first")
    branch.object("same").upload(data=b"content", content_type="text/plain")
    assert list(branch.uncommitted()) == []
    branch.object("same").upload(data=b"content", content_type="text/plain", metadata={"k": "v"})
    assert [c.type for c in branch.uncommitted()] == ["changed"]  # metadata is part of identity


@pytest.mark.parametrize("path", ["../../../../outside.txt", "/etc/passwd-copy", "a/../../b", "..", "./x"])
def test_object_paths_are_keys_never_filesystem_paths(repo, lakefs_server, tmp_path_factory, path):
    data_root = tmp_path_factory.getbasetemp()
    before = {p for p in data_root.parent.rglob("*outside*")}
    branch = repo.branch("main")
    branch.object(path).upload(data=b"contained")
    branch.commit(f"write {path}")
    # stored and read back as an opaque key, like lakeFS ...
    assert repo.ref("main").object(path).reader().read() == b"contained"
    assert path in [o.path for o in repo.ref("main").objects()]
    # ... and nothing was written outside the server's data directory
    assert {p for p in data_root.parent.rglob("*outside*")} == before
    assert not os.path.exists("/etc/passwd-copy")


def test_generated_client_multipart_upload(repo, lakefs_client):
    """``lakefs_sdk``'s own upload sends multipart/form-data with a ``content``
    field; lakeFS accepts that too."""
    stats = lakefs_client.sdk_client.objects_api.upload_object(repo.id, "main", "multi.bin", content=b"\x01\x02\x03")
    assert (stats.path, stats.size_bytes) == ("multi.bin", 3)
    assert stats.checksum == hashlib.md5(b"\x01\x02\x03").hexdigest()
    assert repo.branch("main").object("multi.bin").reader().read() == b"\x01\x02\x03"


def test_reset_discards_uncommitted_changes_by_object_prefix_or_all(repo):
    branch = repo.branch("main")
    branch.object("keep").upload(data=b"committed")
    branch.commit("base")
    for path in ("keep", "dir/a", "dir/b", "other"):
        branch.object(path).upload(data=b"staged")
    branch.reset_changes(path_type="object", path="keep")
    assert branch.object("keep").reader().read() == b"committed"
    branch.reset_changes(path_type="common_prefix", path="dir/")
    assert sorted(c.path for c in branch.uncommitted()) == ["other"]
    branch.reset_changes(path_type="reset")
    assert list(branch.uncommitted()) == []
