"""The whole way from new data to a served model, each stage a subflow
pinned to the commit ids the stage before produced:

1. ingest (write–audit–publish) each requested source → main's new commit;
2. train on that commit (or on ``data_ref``'s commit when nothing is
   ingested);
3. evaluate the candidate and its reference on the eval set at the same commit;
4. register the version, pass it through the gate, promote or reject.

A rerun on an unchanged commit and config reuses every stage: ingest
publishes nothing new, the training and the evaluations come from the cache,
the version is found instead of registered again, and the champion stays.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from flows.evaluate import EvaluationReport, evaluate
from flows.ingest import IngestResult, ingest
from flows.promote import PromotionResult, promote
from flows.train import train
from sluice.config import SluiceConfig
from sluice.datasets import DatasetKind
from tasks.finetune import DATA_KIND, TrainingResult, published_files
from tasks.lakefs import require_commit_id


class IngestRequest(BaseModel):
    """One source to ingest before training."""

    source: str = Field(description="File, folder, saved HF dataset or fsspec URL.")
    kind: DatasetKind = Field(description="sft, eval or preference.")
    source_name: str | None = Field(None, description="Name recorded as each row's source (default: the file).")


class PipelineResult(BaseModel):
    data_commit: str
    ingested: list[IngestResult]
    training: TrainingResult
    evaluation: EvaluationReport
    promotion: PromotionResult


@flow(name="pipeline", log_prints=True)
def pipeline(data_ref: str = "main", ingest_first: list[IngestRequest] = [],  # noqa: B006 (a form default)
             config: SluiceConfig = SluiceConfig()) -> PipelineResult:  # noqa: B008
    """Ingest (optional) → train → evaluate → register → gate → promote."""
    ingested = [ingest(source=request.source, kind=request.kind, source_name=request.source_name, config=config)
                for request in ingest_first]
    data_ref = main_commit_after(ingested) or data_ref
    training = train(data_ref=data_ref, config=config)
    evaluation = evaluate(training=training, config=config)
    promotion = promote(training=training, evaluation=evaluation, config=config)
    result = PipelineResult(data_commit=training.data_commit, ingested=ingested, training=training,
                            evaluation=evaluation, promotion=promotion)
    create_markdown_artifact(markdown=pipeline_report(result, config), key="pipeline",
                             description=promotion.decision.summary())
    return result


@flow(name="pipeline-on-merge", log_prints=True)
def pipeline_on_merge(commit_id: str, config: SluiceConfig = SluiceConfig()) -> PipelineResult | None:  # noqa: B008
    """The pipeline for a merge into main (started by the event bridge's event), pinned to the merge commit.

    One upload of several files merges once per file; until both training and eval data are published the
    run says what is missing and completes without training (a later merge starts the next run)."""
    commit_id = require_commit_id(commit_id)
    needed = [DATA_KIND[config.training.method], "eval"]
    missing = [kind for kind in needed if not published_files(config.lakefs.repository, commit_id, kind,
                                                               config.data.datasets_prefix)]
    if missing:
        message = (f"not training on {commit_id[:12]}: no published {' or '.join(missing)} data there yet "
                   "(the next merge that completes the set starts the pipeline)")
        get_run_logger().info(message)
        create_markdown_artifact(markdown=f"# Pipeline: waiting for data\n\n{message}\n", key="pipeline")
        return None
    return pipeline(data_ref=commit_id, config=config)


def main_commit_after(ingested: list[IngestResult]) -> str | None:
    """main's commit once every ingest is done: the last one's."""
    commits = [r.main_commit.commit_id for r in ingested if r.main_commit]
    return commits[-1] if commits else None


def pipeline_report(result: PipelineResult, config: SluiceConfig) -> str:
    promotion, training, candidate = result.promotion, result.training, result.evaluation.candidate
    lines = [f"# Pipeline: {promotion.decision.summary()}", "",
             f"- data: `lakefs://{config.lakefs.repository}/{result.data_commit}/`",
             *[f"- ingest {r.kind}: {r.decision} ({r.rows_published} rows)" for r in result.ingested],
             f"- training: MLflow run `{training.run_id}`" + (" (reused)" if training.reused else "")
             + f", {training.global_step} steps, loss {training.train_loss}",
             f"- evaluation: run `{candidate.run_id}`, "
             + ", ".join(f"{k} {v:.3f}" for k, v in sorted(candidate.metrics.items())),
             f"- model: `{promotion.version.name}` version {promotion.version.version}"
             + ("" if promotion.version.created else " (registered before)"),
             *[f"- @{alias}: {old or '—'} → {new or '—'}" for alias, old, new in promotion.moves]]
    return "\n".join(lines) + "\n"
