"""Write–audit–publish on the embedded lakeFS, under a real Prefect API.

Every bad input gets a clear error that says what is wrong and where; the
raw input stays on its branch; main does not move."""

from __future__ import annotations

import io
import json
from pathlib import Path

import lakefs
import pyarrow.parquet as pq
import pytest

from flows.ingest import IngestRejected, ingest
from sluice.core.config import ContractsConfig, DataConfig, LakeFSConfig, SluiceConfig
from tests.conftest import REPO_ROOT, latest_artifact, unique_name

pytestmark = pytest.mark.usefixtures("prefect_harness", "lakefs_env")
DEMO_CONTRACTS = REPO_ROOT / "demo" / "contracts"  # the demo's: its sft contract allows only some sources


# ------------------------------------------------------------------ helpers


def _config(tmp_path: Path, repository: str | None = None, **data: object) -> SluiceConfig:
    name = repository or unique_name("ingest")
    return SluiceConfig(lakefs=LakeFSConfig(repository=name, storage_namespace=f"local://{name}"),
                        data=DataConfig(work_dir=tmp_path / "work", **data),
                        contracts=ContractsConfig(directory=DEMO_CONTRACTS))


def _chat(i: int, question: str = "When does it open?") -> dict:
    return {"messages": [{"role": "user", "content": f"Context: gate {i} opens at 0{i % 10}:30. {question} "
                                                     f"(case {i})"},
                         {"role": "assistant", "content": f"Gate {i} opens at 0{i % 10}:30."}],
            "source": "demo"}


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _repo(client, config: SluiceConfig) -> lakefs.Repository:  # type: ignore[no-untyped-def]
    return lakefs.Repository(config.lakefs.repository, client=client)


def _main_before(client, config: SluiceConfig) -> str:  # type: ignore[no-untyped-def]
    """Create the repository and return main's head, as a bad ingest finds it."""
    repo = _repo(client, config).create(storage_namespace=config.lakefs.storage_namespace, exist_ok=True)
    return repo.branch("main").head.id


def _ingest_branch(client, config: SluiceConfig, kind: str) -> lakefs.Branch:  # type: ignore[no-untyped-def]
    branches = [b for b in _repo(client, config).branches() if b.id.startswith(f"ingest-{kind}-")]
    assert len(branches) == 1, [b.id for b in branches]
    return branches[0]


def _read(ref, path: str) -> bytes:  # type: ignore[no-untyped-def]
    return ref.object(path).reader(mode="rb").read()


# ------------------------------------------------------------------ the happy paths


def test_a_valid_batch_is_written_audited_and_published(tmp_path, lakefs_client):
    source = _jsonl(tmp_path / "chats.jsonl", [_chat(i) for i in range(15)])
    config = _config(tmp_path)
    result = ingest(source=str(source), kind="sft", config=config)

    assert (result.decision, result.rows_in, result.rows_published) == ("publish", 15, 15)
    repo = _repo(lakefs_client, config)
    main = repo.branch("main")
    assert main.head.id == result.main_commit.commit_id
    published = pq.read_table(io.BytesIO(_read(main, result.clean_path)))
    assert published.num_rows == 15 and len(set(published["id"].to_pylist())) == 15
    prefix = f"datasets/sft/raw/{result.batch_id}"
    assert _read(main, f"{prefix}/chats.jsonl") == source.read_bytes()  # raw, exactly as received
    manifest = json.loads(_read(main, f"datasets/sft/manifests/{result.batch_id}.json"))
    assert manifest["contract"] == {"kind": "sft", "version": "1.0.0"}
    assert manifest["cleaning"]["rows_in"] == 15 and manifest["validation"]["decision"] == "publish"
    assert b"publish" in _read(main, f"datasets/sft/reports/{result.batch_id}/validation.md")
    assert main.object(f"datasets/sft/reports/{result.batch_id}/data_docs/index.html").exists()

    merge = repo.commit(result.main_commit.commit_id).get_commit()
    assert merge.metadata["sluice.decision"] == "publish"
    assert merge.metadata["sluice.contract_version"] == "1.0.0"
    assert merge.metadata["prefect.flow_run_id"] not in ("", "local")
    audited = repo.commit(merge.parents[1]).get_commit()  # write commit → audit commit → merge
    assert audited.message.startswith("Validate sft batch") and "not yet validated" in \
        repo.commit(audited.parents[0]).get_commit().message
    assert [b.id for b in repo.branches()] == ["main"]

    report = latest_artifact("ingest-sft")
    assert result.batch_id in report and result.main_commit.commit_id[:12] in report

    again = ingest(source=str(source), kind="sft", config=config)
    assert again.decision == "nothing_new" and main.head.id == result.main_commit.commit_id


def test_invalid_rows_under_the_bound_are_quarantined(tmp_path, lakefs_client):
    bad = {"messages": [{"role": "assistant", "content": "I speak first."},
                        {"role": "user", "content": "That is the wrong order."}], "source": "demo"}
    source = _jsonl(tmp_path / "mostly-good.jsonl", [_chat(i) for i in range(40)] + [bad])
    config = _config(tmp_path)
    result = ingest(source=str(source), kind="sft", config=config)

    assert (result.decision, result.rows_published, result.rows_quarantined) == ("publish_with_quarantine", 40, 1)
    main = _repo(lakefs_client, config).branch("main")
    assert pq.read_table(io.BytesIO(_read(main, result.clean_path))).num_rows == 40
    quarantine = pq.read_table(io.BytesIO(_read(main, f"datasets/sft/quarantine/{result.batch_id}.parquet")))
    assert quarantine["source_line"].to_pylist() == [41]
    assert "chat roles follow" in quarantine["quarantine_reasons"][0].as_py()


# ------------------------------------------------------------------ contract violations


def test_invalid_rows_over_the_bound_reject_the_batch(tmp_path, lakefs_client):
    rows = [_chat(i) for i in range(12)] + [{"prompt": "no answer given", "source": "demo"}] * 1 + [
        {"prompt": i, "response": "number as a prompt", "source": "demo"} for i in range(3)]
    source = _jsonl(tmp_path / "half-bad.jsonl", rows)
    config = _config(tmp_path)
    head = _main_before(lakefs_client, config)

    with pytest.raises(IngestRejected) as rejected:
        ingest(source=str(source), kind="sft", config=config)
    message = str(rejected.value)
    assert "4 of 16 rows are invalid (25.0%)" in message
    assert "schema.messages.required: messages is present — 4 row(s)" in message
    assert "schema.types: every field has its declared type — 3 row(s)" in message
    branch = _ingest_branch(lakefs_client, config, "sft")
    assert branch.id in message and "main is untouched" in message

    assert _repo(lakefs_client, config).branch("main").head.id == head
    batch = branch.id.removeprefix("ingest-sft-")
    assert _read(branch, f"datasets/sft/raw/{batch}/half-bad.jsonl") == source.read_bytes()
    quarantine = pq.read_table(io.BytesIO(_read(branch, f"datasets/sft/quarantine/{batch}.parquet")))
    assert sorted(quarantine["source_line"].to_pylist()) == [13, 14, 15, 16]
    assert "prompt: expected text, got int" in " ".join(quarantine["quarantine_reasons"].to_pylist())
    assert branch.object(f"datasets/sft/reports/{batch}/data_docs/index.html").exists()
    assert branch.get_commit().metadata["sluice.decision"] == "reject"


def test_an_entirely_invalid_file_is_rejected(tmp_path, lakefs_client):
    source = _jsonl(tmp_path / "all-bad.jsonl", [{"question": f"q{i}", "contexts": [], "reference": ""}
                                                 for i in range(12)])
    config = _config(tmp_path)
    head = _main_before(lakefs_client, config)
    with pytest.raises(IngestRejected) as rejected:
        ingest(source=str(source), kind="eval", config=config)
    assert "12 of 12 rows break the contract and it says fail" in str(rejected.value)
    assert "at least 1 context passage(s) — 12 row(s)" in str(rejected.value)
    assert _repo(lakefs_client, config).branch("main").head.id == head


def test_a_missing_required_field_in_eval_data_rejects(tmp_path, lakefs_client):
    rows = [{"question": f"Where is gate {i}?", "contexts": [f"Gate {i} is at the mill."],
             "reference": f"Gate {i} is at the mill."} for i in range(12)]
    rows[5] = {"question": "Where is gate 5?", "contexts": ["Gate 5 is at the mill."]}  # no reference
    config = _config(tmp_path)
    with pytest.raises(IngestRejected) as rejected:
        ingest(source=str(_jsonl(tmp_path / "eval.jsonl", rows)), kind="eval", config=config)
    assert "schema.reference.required: reference is present — 1 row(s)" in str(rejected.value)


def test_eval_rows_that_overlap_training_data_are_rejected(tmp_path, lakefs_client):
    config = _config(tmp_path)
    sft = [{"prompt": f"Where is gate {i}?", "response": f"Gate {i} is at the mill.", "source": "demo"}
           for i in range(12)]
    ingest(source=str(_jsonl(tmp_path / "train.jsonl", sft)), kind="sft", config=config)
    head = _repo(lakefs_client, config).branch("main").head.id

    evaluation = [{"question": f"Which lock is number {i}?", "contexts": [f"Lock {i} is red."],
                   "reference": f"Lock {i} is red."} for i in range(12)]
    evaluation[3] = {"question": "  where IS gate 7? ", "contexts": ["Gate 7 is at the mill."],
                     "reference": "Gate 7 is at the mill."}  # a training prompt, differently spaced and cased
    with pytest.raises(IngestRejected) as rejected:
        ingest(source=str(_jsonl(tmp_path / "eval.jsonl", evaluation)), kind="eval", config=config)
    assert "not already in published sft, preference data — 1 row(s)" in str(rejected.value)
    assert _repo(lakefs_client, config).branch("main").head.id == head


# ------------------------------------------------------------------ unreadable input


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("malformed.jsonl", b'{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": }\n',
         "malformed.jsonl:2: malformed JSON"),
        ("latin1.jsonl", '{"prompt": "caf\u00e9", "response": "b"}\n'.encode("latin-1"),
         "latin1.jsonl:1: not valid UTF-8 (byte 0xe9)"),
        ("empty.jsonl", b"", "empty input: no rows to ingest"),
        ("no-shape.jsonl", b'{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n',
         "no-shape.jsonl: no row matches a sft shape (fields found: text, label)"),
    ],
)
def test_unreadable_input_keeps_the_raw_file_and_names_file_and_line(tmp_path, lakefs_client, name, content,
                                                                    problem):
    source = tmp_path / name
    source.write_bytes(content)
    config = _config(tmp_path)
    head = _main_before(lakefs_client, config)
    with pytest.raises(IngestRejected) as rejected:
        ingest(source=str(source), kind="sft", config=config)
    assert problem in str(rejected.value)
    assert _repo(lakefs_client, config).branch("main").head.id == head
    branch = _ingest_branch(lakefs_client, config, "sft")
    assert branch.id in str(rejected.value)
    batch = branch.id.removeprefix("ingest-sft-")
    assert _read(branch, f"datasets/sft/raw/{batch}/{name}") == content  # nothing lost
    manifest = json.loads(_read(branch, f"datasets/sft/manifests/{batch}.json"))
    assert problem in manifest["error"]
    assert branch.get_commit().metadata["sluice.decision"] == "unreadable"


def test_a_source_that_does_not_exist_fails_before_anything_is_written(tmp_path, lakefs_client):
    config = _config(tmp_path)
    with pytest.raises(Exception, match="does not exist"):
        ingest(source=str(tmp_path / "nowhere.jsonl"), kind="sft", config=config)
    assert not any(r.properties.id == config.lakefs.repository for r in lakefs.repositories(client=lakefs_client))


def test_an_unknown_dataset_kind_is_refused_before_anything_runs(tmp_path, lakefs_client):
    from prefect.exceptions import ParameterTypeError

    config = _config(tmp_path)
    with pytest.raises(ParameterTypeError, match="kind"):
        ingest(source=str(_jsonl(tmp_path / "x.jsonl", [_chat(1)])), kind="chat", config=config)  # type: ignore[arg-type]
    assert not any(r.properties.id == config.lakefs.repository for r in lakefs.repositories(client=lakefs_client))


# ------------------------------------------------------------------ odd but valid input


def test_a_single_10_mb_row_is_read_and_dropped_as_too_long(tmp_path, lakefs_client):
    huge = {"prompt": "Summarise this.", "response": "word " * 2_100_000, "source": "demo"}
    source = _jsonl(tmp_path / "huge.jsonl", [_chat(i) for i in range(12)] + [huge])
    assert source.stat().st_size > 10_000_000
    config = _config(tmp_path)
    result = ingest(source=str(source), kind="sft", config=config)
    assert (result.decision, result.rows_in, result.rows_published) == ("publish", 13, 12)
    main = _repo(lakefs_client, config).branch("main")
    manifest = json.loads(_read(main, f"datasets/sft/manifests/{result.batch_id}.json"))
    assert manifest["cleaning"]["dropped"] == {"too_long": 1}
    assert main.object(f"datasets/sft/raw/{result.batch_id}/huge.jsonl").stat().size_bytes == source.stat().st_size


def test_pii_is_redacted_before_publishing(tmp_path, lakefs_client):
    rows = [_chat(i) for i in range(12)]
    rows[2]["messages"][1]["content"] = "Mail ada@example.org or call +44 20 7946 0958."
    config = _config(tmp_path)
    result = ingest(source=str(_jsonl(tmp_path / "pii.jsonl", rows)), kind="sft", config=config)
    main = _repo(lakefs_client, config).branch("main")
    published = pq.read_table(io.BytesIO(_read(main, result.clean_path))).to_pylist()
    texts = " ".join(m["content"] for row in published for m in row["messages"])
    assert "ada@example.org" not in texts and "[EMAIL]" in texts and "[PHONE]" in texts
    manifest = json.loads(_read(main, f"datasets/sft/manifests/{result.batch_id}.json"))
    assert manifest["cleaning"]["pii_redacted"] == {"email": 1, "phone": 1}


# ------------------------------------------------------------------ other sources


def test_ingest_from_a_folder_and_a_saved_hf_dataset(tmp_path, lakefs_client):
    from datasets import Dataset

    folder = tmp_path / "feed"
    folder.mkdir()
    _jsonl(folder / "part-1.jsonl", [_chat(i) for i in range(6)])
    _jsonl(folder / "part-2.jsonl", [_chat(i) for i in range(6, 12)])
    config = _config(tmp_path)
    from_folder = ingest(source=str(folder), kind="sft", config=config)
    assert from_folder.rows_published == 12

    saved = tmp_path / "hf-eval"
    Dataset.from_dict({"question": [f"Which lock is {i}?" for i in range(10)],
                       "contexts": [[f"Lock {i} is red."] for i in range(10)],
                       "reference": [f"Lock {i} is red." for i in range(10)]}).save_to_disk(str(saved))
    from_hf = ingest(source=str(saved), kind="eval", config=config)
    assert (from_hf.decision, from_hf.rows_published) == ("publish", 10)
    raw = [o.path for o in _repo(lakefs_client, config).branch("main").objects(
        prefix=f"datasets/eval/raw/{from_hf.batch_id}/hf-eval/")]
    assert any(p.endswith(".arrow") for p in raw)


def test_ingest_from_a_lakefs_url(tmp_path, lakefs_client):
    config = _config(tmp_path)
    landing = _repo(lakefs_client, config).create(storage_namespace=config.lakefs.storage_namespace)
    landing.branch("main").object("landing/chats.jsonl").upload(
        data="".join(json.dumps(_chat(i)) + "\n" for i in range(11)))
    landing.branch("main").commit("landing zone")
    result = ingest(source=f"lakefs://{config.lakefs.repository}/main/landing/chats.jsonl", kind="sft",
                    config=config)
    assert (result.decision, result.rows_published) == ("publish", 11)


@pytest.fixture
def s3_server(monkeypatch):  # type: ignore[no-untyped-def]
    """An S3-compatible server on loopback (moto), reached through the standard AWS variables."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    yield
    server.stop()


def test_ingest_from_s3(tmp_path, lakefs_client, s3_server):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="feeds")
    s3.put_object(Bucket="feeds", Key="preference/batch.jsonl", Body="".join(
        json.dumps({"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad {i}."}) + "\n"
        for i in range(10)).encode())
    config = _config(tmp_path)
    result = ingest(source="s3://feeds/preference/", kind="preference", source_name="demo", config=config)
    assert (result.decision, result.rows_published) == ("publish", 10)
    main = _repo(lakefs_client, config).branch("main")
    assert main.object(f"datasets/preference/raw/{result.batch_id}/batch.jsonl").exists()


# ------------------------------------------------------------------ lakeFS down


@pytest.mark.slow
def test_an_unreachable_lakefs_is_retried_then_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKECTL_SERVER_ENDPOINT_URL", "http://127.0.0.1:9")
    source = _jsonl(tmp_path / "chats.jsonl", [_chat(i) for i in range(12)])
    with pytest.raises(Exception, match="lakeFS at http://127.0.0.1:9 is not reachable"):
        ingest(source=str(source), kind="sft", config=_config(tmp_path))


# ------------------------------------------------------------------ from the shell


def test_sluice_ingest_reports_rejection_with_exit_code_1(tmp_path, lakefs_client):
    from typer.testing import CliRunner

    from sluice.shell.cli import app

    name = unique_name("cli")
    source = _jsonl(tmp_path / "bad.jsonl", [{"prompt": i, "response": "x", "source": "demo"} for i in range(12)])
    result = CliRunner().invoke(app, ["ingest", str(source), "--kind", "sft", f"lakefs.repository={name}",
                                      f"lakefs.storage_namespace=local://{name}", f"data.work_dir={tmp_path}/w",
                                      f"contracts.directory={DEMO_CONTRACTS}"])
    assert result.exit_code == 1, result.output
    assert "REJECTED" in result.output and "every field has its declared type — 12 row(s)" in result.output

    good = _jsonl(tmp_path / "good.jsonl", [_chat(i) for i in range(12)])
    published = CliRunner().invoke(app, ["ingest", str(good), "-k", "sft", f"lakefs.repository={name}",
                                         f"data.work_dir={tmp_path}/w", f"contracts.directory={DEMO_CONTRACTS}"])
    assert published.exit_code == 0, published.output
    assert "publish: published 12 sft rows to main" in published.output


def test_sluice_ingest_refuses_an_unknown_kind():
    from typer.testing import CliRunner

    from sluice.shell.cli import app

    result = CliRunner().invoke(app, ["ingest", "demo/data/sft.jsonl", "--kind", "chat"])
    assert result.exit_code == 2
    assert "unknown dataset kind 'chat': expected one of sft, eval, preference" in result.output
