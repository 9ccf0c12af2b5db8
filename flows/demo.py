"""The demo job: the bundled demo datasets enter the data lake through
write–audit–publish (eval after sft, so the eval contract can check it does
not overlap the training data), then the pipeline fine-tunes the base model
(SmolLM2-135M-Instruct, fetched offline) on them, evaluates, and promotes it
only through the gate."""

from __future__ import annotations

from prefect import flow

from flows.ingest import ingest
from flows.pipeline import pipeline
from sluice.core.config import SluiceConfig
from sluice.core.data.batch import IngestResult
from sluice.core.pipeline import IngestRequest, PipelineResult
from tasks.finetune import ensure_base_model

DEMO_FILES = {"sft": "sft.jsonl", "eval": "eval.jsonl", "preference": "preference.jsonl"}


@flow(name="ingest-demo-data", log_prints=True)
def ingest_demo_data(config: SluiceConfig = SluiceConfig()) -> list[IngestResult]:  # noqa: B008 (a form default)
    return [ingest(source=str(config.data.demo_source / name), kind=kind, source_name="demo",  # type: ignore[arg-type]
                   config=config)
            for kind, name in DEMO_FILES.items()]


@flow(name="demo", log_prints=True)
def demo(config: SluiceConfig = SluiceConfig()) -> PipelineResult:  # noqa: B008 (a form default)
    """Fetch the base model if needed (SmolLM2, offline), then the whole pipeline on the demo data."""
    ensure_base_model(config.training.base_model, str(config.data.demo_source))
    requests = [IngestRequest(source=str(config.data.demo_source / name), kind=kind, source_name="demo")  # type: ignore[arg-type]
                for kind, name in DEMO_FILES.items()]
    return pipeline(ingest_first=requests, config=config)
