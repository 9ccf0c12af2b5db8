"""Live traffic → an eval batch on main through write–audit–publish: the request log and feedback store that
sluice serve writes, a real embedded lakeFS, the eval contract deciding."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from flows.live_eval import export_live_eval
from sluice.core.config import DataConfig, ServingConfig, SluiceConfig
from sluice.core.data.batch import IngestRejected
from sluice.core.lake.operations import download_dataset, resolve_commit
from sluice.serving.feedback import FeedbackStore
from sluice.serving.telemetry import RequestLog
from tests.unit.test_live_eval_rows import chat, serve


NAMES = ["Ashgrove", "Brinkwater", "Coldharbour", "Dunmere", "Eelbrook", "Foxlease", "Gullhaven", "Hartwell",
         "Ivybridge", "Juniper Reach", "Kestrel Cut", "Larkspur", "Mossford", "Nettlebed", "Otterpool", "Pennywort",
         "Quillmere", "Rookhollow", "Sedgewick", "Thornbury", "Umberleigh", "Vetchley", "Willowmead", "Yarrowdale"]
KEEPERS = ["Ada Finch", "Bram Holt", "Cleo Marsh", "Dov Reyes", "Esme Quill", "Finn Toller"]


def _traffic(state, first: int, count: int, context_words: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Answered chats in the eval template, each rated 5, and one nobody rated."""
    log, store = RequestLog(state / "requests.jsonl"), FeedbackStore(state / "feedback.db")
    for i in range(first, first + count):
        name, keeper = NAMES[i], KEEPERS[i % len(KEEPERS)]
        context = (f"The weir at {name} lifts at {5 + i % 4}:{(7 * i) % 60:02d} and drops at {17 + i % 5}:15. "
                   f"{keeper} keeps it. Barges of {10 + 3 * i} metres may pass; the pool is {150 + 11 * i} cm deep."
                   + " Water rises slowly." * context_words)
        lifts = f"{5 + i % 4}:{(7 * i) % 60:02d}"
        answer = f"{keeper} keeps the weir at {name}." if i % 2 else f"The {name} weir lifts at {lifts}."
        question = f"Who keeps the weir at {name}?" if i % 2 else f"At what hour does the {name} weir lift?"
        serve(log, store, f"chatcmpl-{i}", chat(question, context), answer)
        store.add_feedback(f"chatcmpl-{i}", 5)
    serve(log, store, f"chatcmpl-unrated-{first}", chat("When does the west lock open?", "It opens at 09:00."),
          "At 09:00.")  # nobody rated it: no reference, left out
    store.close()


@pytest.mark.slow
def test_rated_live_traffic_becomes_eval_data_on_main_once_and_an_invalid_batch_stays_off_main(
        published, tmp_path):
    lake, _ = published
    state = tmp_path / "serving"
    config = SluiceConfig(lakefs=lake, data=DataConfig(work_dir=tmp_path / "work"),
                          serving=ServingConfig(state_dir=state))
    _traffic(state, 0, 4)
    waiting = export_live_eval(sample_rate=1.0, config=config)  # 4 rows < the eval contract's 10
    assert (waiting.rows, waiting.ingest) == (4, None) and "waiting" in waiting.message

    _traffic(state, 4, 8)
    exported = export_live_eval(sample_rate=1.0, config=config)
    assert exported.ingest is not None and exported.ingest.decision == "publish"
    local = download_dataset(lake.repository, exported.ingest.main_commit.commit_id, exported.ingest.clean_path,
                             tmp_path / "cache").local_path
    rows = pq.read_table(local).to_pylist()
    assert len(rows) == 12 and {r["source"] for r in rows} == {"sluice-serve-traffic"}
    assert {r["question"] for r in rows} == {f"Who keeps the weir at {n}?" if i % 2 else
                                             f"At what hour does the {n} weir lift?" for i, n in enumerate(NAMES[:12])}
    assert all(r["reference"].split()[-1].rstrip(".") in r["contexts"][0] for r in rows)

    again = export_live_eval(sample_rate=1.0, config=config)  # the same sample: all on main already
    assert (again.rows, again.ingest) == (0, None) and "12 already in main's eval data" in again.message

    main_before = exported.ingest.main_commit.commit_id
    _traffic(state, 12, 12, context_words=1500)  # pasted contexts past the contract's 4096 tokens
    with pytest.raises(IngestRejected, match="observed 0"):
        export_live_eval(sample_rate=1.0, config=config)
    assert resolve_commit(lake.repository, lake.default_branch).commit_id == main_before
