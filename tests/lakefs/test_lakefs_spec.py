"""lakefs-spec (fsspec) and pandas against the embedded server: parquet
written to a branch, read back at the branch, a tag and a commit id."""

from __future__ import annotations

import pandas as pd
import pytest
from lakefs_spec import LakeFSFileSystem


@pytest.fixture
def storage_options(lakefs_server):
    return {"host": lakefs_server.url, "username": lakefs_server.access_key_id,
            "password": lakefs_server.secret_access_key}


def test_parquet_round_trip_at_branch_tag_and_commit(repo, storage_options):
    first = pd.DataFrame({"id": [1, 2, 3], "text": ["a", "b", "c"]})
    url = f"lakefs://{repo.id}/main/tables/rows.parquet"
    first.to_parquet(url, storage_options=storage_options)
    commit_1 = repo.branch("main").commit("rows v1").get_commit().id
    repo.tag("v1").create(commit_1)

    second = pd.DataFrame({"id": [4], "text": ["d"]})
    second.to_parquet(url, storage_options=storage_options)
    assert pd.read_parquet(url, storage_options=storage_options).equals(second)  # staged, read at the branch
    commit_2 = repo.branch("main").commit("rows v2").get_commit().id

    at = {ref: pd.read_parquet(f"lakefs://{repo.id}/{ref}/tables/rows.parquet", storage_options=storage_options)
          for ref in ("main", "v1", commit_1, commit_2)}
    assert at["main"].equals(second) and at[commit_2].equals(second)
    assert at["v1"].equals(first) and at[commit_1].equals(first)


def test_filesystem_listing_info_and_file_transfer(repo, lakefs_server, tmp_path):
    fs = LakeFSFileSystem(host=lakefs_server.url, username=lakefs_server.access_key_id,
                          password=lakefs_server.secret_access_key)
    local = tmp_path / "in.txt"
    local.write_text("hello lakeFS\n")
    fs.put_file(str(local), f"{repo.id}/main/docs/in.txt")
    fs.pipe(f"{repo.id}/main/docs/sub/note.txt", b"note")
    repo.branch("main").commit("docs")

    assert fs.exists(f"{repo.id}/main/docs/in.txt")
    assert not fs.exists(f"{repo.id}/main/docs/missing.txt")
    info = fs.info(f"{repo.id}/main/docs/in.txt")
    assert info["size"] == len("hello lakeFS\n") and info["type"] == "file"
    listing = {entry["name"]: entry["type"] for entry in fs.ls(f"{repo.id}/main/docs/")}
    assert listing == {f"{repo.id}/main/docs/in.txt": "file", f"{repo.id}/main/docs/sub/": "directory"}
    assert fs.cat(f"{repo.id}/main/docs/sub/note.txt") == b"note"

    fs.get_file(f"{repo.id}/main/docs/in.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "hello lakeFS\n"
    fs.rm(f"{repo.id}/main/docs/sub/note.txt")
    assert not fs.exists(f"{repo.id}/main/docs/sub/note.txt")
