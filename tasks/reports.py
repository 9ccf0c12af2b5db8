"""Each flow run's markdown report, as a Prefect artifact: the builders are
plain functions of the core; these tasks publish what they write."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from sluice.core.config import SluiceConfig
from sluice.core.data.batch import IngestResult
from sluice.core.data.feedback import FeedbackExport, feedback_report
from sluice.core.data.reports import incoming_report, ingest_report
from sluice.core.data.validation import ValidationSummary
from sluice.core.evaluation.results import EvaluationReport
from sluice.core.pipeline import PipelineResult, pipeline_report, waiting_for_data_report
from sluice.core.promotion.aliases import AliasMove
from sluice.core.promotion.report import PromotionResult, promotion_report, rollback_report
from sluice.core.training.report import training_report
from sluice.core.training.results import TrainingResult
from tasks import UNCACHED


@task(name="report-ingest", **UNCACHED)
def report_ingest(result: IngestResult, summary: ValidationSummary | None) -> None:
    create_markdown_artifact(markdown=ingest_report(result, summary), key=f"ingest-{result.kind}",
                             description=f"ingest {result.kind}: {result.decision}")


@task(name="report-incoming", **UNCACHED)
def report_incoming(branch: str, commit_id: str, results: dict[str, IngestResult | str], skipped: list[str],
                    kinds: tuple[str, ...]) -> None:
    create_markdown_artifact(markdown=incoming_report(branch, commit_id, results, skipped, kinds), key="incoming")


@task(name="report-training", **UNCACHED)
def report_training(result: TrainingResult, config: SluiceConfig, data_ref: str) -> None:
    create_markdown_artifact(markdown=training_report(result, config, data_ref), key="train",
                             description=f"training on {result.data_commit[:12]}")


@task(name="report-promotion", **UNCACHED)
def report_promotion(result: PromotionResult, evaluation: EvaluationReport, confidence: float) -> None:
    create_markdown_artifact(markdown=promotion_report(result, evaluation, confidence), key="promotion",
                             description=result.summary())


@task(name="report-rollback", **UNCACHED)
def report_rollback(model_name: str, reason: str, moves: list[AliasMove]) -> None:
    create_markdown_artifact(markdown=rollback_report(model_name, reason, moves), key="rollback",
                             description=reason)


@task(name="report-pipeline", **UNCACHED)
def report_pipeline(result: PipelineResult, repository: str) -> None:
    create_markdown_artifact(markdown=pipeline_report(result, repository), key="pipeline",
                             description=result.promotion.summary())


@task(name="report-waiting-for-data", **UNCACHED)
def report_waiting_for_data(message: str) -> None:
    create_markdown_artifact(markdown=waiting_for_data_report(message), key="pipeline")


@task(name="report-feedback-export", **UNCACHED)
def report_feedback_export(result: FeedbackExport) -> None:
    create_markdown_artifact(markdown=feedback_report(result), key="feedback-export")
