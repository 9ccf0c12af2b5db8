"""The demo job: the bundled demo datasets enter the data lake through
write–audit–publish (eval after sft, so the eval contract can check it does
not overlap the training data), then the pipeline trains the tiny base model
on them, evaluates, and promotes it only through the gate."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.ingest import IngestResult, ingest
from flows.pipeline import IngestRequest, PipelineResult, pipeline
from sluice.config import SluiceConfig

DEMO_FILES = {"sft": "sft.jsonl", "eval": "eval.jsonl", "preference": "preference.jsonl"}


@flow(name="ingest-demo-data", log_prints=True)
def ingest_demo_data(config: SluiceConfig = SluiceConfig()) -> list[IngestResult]:  # noqa: B008 (a form default)
    return [ingest(source=str(config.data.demo_source / name), kind=kind, source_name="demo",  # type: ignore[arg-type]
                   config=config)
            for kind, name in DEMO_FILES.items()]


@flow(name="demo", log_prints=True)
def demo(config: SluiceConfig = SluiceConfig()) -> PipelineResult:  # noqa: B008 (a form default)
    """Build the tiny base model if needed, then the whole pipeline on the demo data."""
    ensure_tiny_base_model(config.training.base_model, str(config.data.demo_source))
    requests = [IngestRequest(source=str(config.data.demo_source / name), kind=kind, source_name="demo")  # type: ignore[arg-type]
                for kind, name in DEMO_FILES.items()]
    return pipeline(ingest_first=requests, config=config)


@task(name="ensure-tiny-base-model", cache_policy=NO_CACHE)
def ensure_tiny_base_model(base_model: str, demo_source: str) -> str:
    """The demo's base model is the tiny one, built offline from the demo text when it is missing."""
    path = Path(base_model)
    if (path / "config.json").exists() or not base_model.startswith((".", "/")):
        return base_model
    from sluice.tiny_model import build_tiny_model

    info = build_tiny_model(path, sorted(Path(demo_source).glob("*.jsonl")))
    get_run_logger().info("built the tiny base model in %s: %d parameters", path, info.parameters)
    return base_model
