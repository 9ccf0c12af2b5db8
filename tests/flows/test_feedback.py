"""Feedback → preference data on main → DPO: the serving endpoint's store
(the same FeedbackStore the server writes) is exported through
write–audit–publish, marked with the commit, and trained on."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from flows.feedback import export_feedback
from flows.train import train
from sluice.core.config import DataConfig, ServingConfig, SluiceConfig, TrackingConfig, TrainingConfig
from sluice.core.lake.operations import download_dataset
from sluice.core.lake.published import published_files
from sluice.serving.feedback import FeedbackStore, preference_pairs


def _store_with_feedback(path, count: int) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore(path)
    for i in range(count):
        response = f"chatcmpl-{i}"
        store.record_response(response, endpoint="chat", model_version="1", finish_reason="stop",
                              prompt=[{"role": "user", "content": f"Which lock on canal {i} opens first at dawn?"}],
                              completion=f"I am not sure about canal {i}.")
        store.add_feedback(response, rating=1, preferred=f"The east lock of canal {i} opens first, at 05:10.")
    store.close()


@pytest.mark.slow
def test_feedback_becomes_preference_data_on_main_once_and_dpo_trains_on_it(published, tiny_model, tmp_path):
    lake, _ = published
    database = tmp_path / "serving" / "feedback.db"
    config = SluiceConfig(lakefs=lake, data=DataConfig(work_dir=tmp_path / "work"),
                          serving=ServingConfig(state_dir=tmp_path / "serving"),
                          training=TrainingConfig(base_model=str(tiny_model), output_dir=tmp_path / "training",
                                                  method="dpo", max_steps=2, batch_size=4, max_length=128),
                          tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"))
    _store_with_feedback(database, 4)
    waiting = export_feedback(config=config)  # fewer pairs than the contract's minimum: nothing is written
    assert (waiting.pairs, waiting.exported, waiting.ingest) == (4, 0, None)

    _store_with_feedback(database, 12)  # the same 4 responses again plus 8 more: 16 feedback items, 12 prompts
    exported = export_feedback(config=config)
    assert exported.ingest is not None and exported.ingest.decision == "publish"
    commit = exported.ingest.main_commit.commit_id
    assert exported.exported == 16 and preference_pairs(database) == []  # never exported twice

    paths = [p for p in published_files(lake.repository, commit, "preference", "datasets")
             if "serving-feedback" in p or p == exported.ingest.clean_path]
    local = download_dataset(lake.repository, commit, exported.ingest.clean_path, tmp_path / "cache").local_path
    rows = pq.read_table(local).to_pylist()
    assert paths and len(rows) == 12
    assert {r["chosen"] for r in rows} == {f"The east lock of canal {i} opens first, at 05:10." for i in range(12)}
    assert all(r["rejected"].startswith("I am not sure") for r in rows)

    again = export_feedback(config=config)
    assert (again.pairs, again.ingest) == (0, None)

    trained = train(data_ref=commit, config=config)  # DPO on main, which now includes the feedback
    assert trained.data_commit == commit and trained.global_step == 2
