"""The demo job: the bundled demo datasets enter the data lake through
write–audit–publish, one kind after another (eval after sft, so the eval
contract can check it does not overlap the training data)."""

from __future__ import annotations

from prefect import flow

from flows.ingest import IngestResult, ingest
from sluice.config import SluiceConfig

DEMO_FILES = {"sft": "sft.jsonl", "eval": "eval.jsonl", "preference": "preference.jsonl"}


@flow(name="ingest-demo-data", log_prints=True)
def ingest_demo_data(config: SluiceConfig = SluiceConfig()) -> list[IngestResult]:  # noqa: B008 (a form default)
    return [ingest(source=str(config.data.demo_source / name), kind=kind, source_name="demo",  # type: ignore[arg-type]
                   config=config)
            for kind, name in DEMO_FILES.items()]
