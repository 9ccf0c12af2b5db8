"""The whole run from new data to a gated model: what each pipeline run
returns and reports. The top of the core: it names every stage's result."""

from __future__ import annotations

from pydantic import BaseModel, Field

from sluice.core.data.batch import IngestResult
from sluice.core.data.kinds import DatasetKind
from sluice.core.evaluation.results import EvaluationReport
from sluice.core.promotion.report import PromotionResult, alias_move_lines
from sluice.core.training.results import TrainingResult


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


def main_commit_after(ingested: list[IngestResult]) -> str | None:
    """main's commit once every ingest is done: the last one's."""
    commits = [r.main_commit.commit_id for r in ingested if r.main_commit]
    return commits[-1] if commits else None


def pipeline_report(result: PipelineResult, repository: str) -> str:
    promotion, training, candidate = result.promotion, result.training, result.evaluation.candidate
    lines = [f"# Pipeline: {promotion.summary()}", "",
             f"- data: `lakefs://{repository}/{result.data_commit}/`",
             *[f"- ingest {r.kind}: {r.decision} ({r.rows_published} rows)" for r in result.ingested],
             f"- training: MLflow run `{training.run_id}`" + (" (reused)" if training.reused else "")
             + f", {training.global_step} steps, loss {training.train_loss}",
             f"- evaluation: run `{candidate.run_id}`, "
             + ", ".join(f"{k} {v:.3f}" for k, v in sorted(candidate.metrics.items())),
             f"- model: `{promotion.version.name}` version {promotion.version.version}"
             + ("" if promotion.version.created else " (registered before)"),
             *alias_move_lines(promotion.moves)]
    return "\n".join(lines) + "\n"


def waiting_for_data_report(message: str) -> str:
    return f"# Pipeline: waiting for data\n\n{message}\n"
