"""Raw data committed on an incoming-* branch: valid files reach main
through write–audit–publish; a file that breaks its contract does not, and
the flow fails naming it. The raw files stay on the incoming branch."""

from __future__ import annotations

import lakefs
import pytest

from flows.incoming import validate_incoming
from sluice.core.config import DataConfig, LakeFSConfig, SluiceConfig
from sluice.core.data.incoming import IncomingRejected, incoming_files
from tests.conftest import REPO_ROOT, latest_artifact, unique_name

pytestmark = pytest.mark.usefixtures("prefect_harness", "lakefs_env")


def test_the_top_folder_names_the_kind():
    files, skipped = incoming_files(["sft/a.jsonl", "eval/b.csv", "README.md", "other/c.jsonl", "preference/p.jsonl"])
    assert [(f.path, f.kind) for f in files] == [("sft/a.jsonl", "sft"), ("preference/p.jsonl", "preference"),
                                                 ("eval/b.csv", "eval")]  # eval last: checked against training
    assert skipped == ["README.md", "other/c.jsonl"]


def _landing(lakefs_client, tmp_path, files: dict[str, str]):  # type: ignore[no-untyped-def]
    name = unique_name("incoming")
    config = SluiceConfig(lakefs=LakeFSConfig(repository=name, storage_namespace=f"local://{name}"),
                          data=DataConfig(work_dir=tmp_path / "work"))
    repo = lakefs.Repository(name, client=lakefs_client).create(storage_namespace=config.lakefs.storage_namespace)
    branch = repo.branch("incoming-upload-1").create(source_reference="main")
    for path, source in files.items():
        branch.object(path).upload((REPO_ROOT / source).read_bytes())
    commit = branch.commit(message="raw upload").get_commit().id
    return config, repo, commit


def test_valid_incoming_files_are_published_to_main(lakefs_client, tmp_path):
    config, repo, commit = _landing(lakefs_client, tmp_path, {"sft/chats.jsonl": "demo/data/sft.jsonl",
                                                              "notes.txt": "README.md"})
    results = validate_incoming(branch="incoming-upload-1", commit_id=commit, config=config)
    assert [(r.kind, r.decision) for r in results] == [("sft", "publish")]
    assert results[0].rows_published > 100
    assert repo.branch("main").head.id == results[0].main_commit.commit_id
    assert "notes.txt`: skipped" in latest_artifact("incoming")


def test_a_file_that_breaks_its_contract_never_reaches_main(lakefs_client, tmp_path):
    config, repo, commit = _landing(lakefs_client, tmp_path, {"sft/broken.jsonl": "demo/broken/sft.jsonl"})
    main_before = repo.branch("main").head.id
    with pytest.raises(IncomingRejected, match="sft/broken.jsonl"):
        validate_incoming(branch="incoming-upload-1", commit_id=commit, config=config)
    assert repo.branch("main").head.id == main_before
    assert repo.branch("incoming-upload-1").head.id == commit  # the raw upload stays where it landed
    assert "did not reach main" in latest_artifact("incoming")
