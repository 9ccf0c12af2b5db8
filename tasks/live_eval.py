"""Live-eval tasks: sampled live traffic as eval rows, written as an eval file, and the export's report."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from sluice.core.data import live_eval
from tasks import UNCACHED


@task(name="collect-live-eval-rows", **UNCACHED)
def collect_live_eval_rows(request_log: str, feedback_db: str, sample_rate: float, max_rows: int,
                           good_rating: int, template: str, separator: str,
                           published_keys: set[str]) -> live_eval.LiveEvalRows:
    return live_eval.live_eval_rows(Path(request_log), Path(feedback_db), sample_rate=sample_rate,
                                    max_rows=max_rows, good_rating=good_rating, template=template,
                                    separator=separator, published_keys=frozenset(published_keys))


write_live_eval_file = task(live_eval.write_live_eval_file, name="write-live-eval-file", **UNCACHED)


@task(name="report-live-eval-export", **UNCACHED)
def report_live_eval_export(result: live_eval.LiveEvalExport) -> None:
    create_markdown_artifact(live_eval.live_eval_report(result), key="live-eval-export",
                             description="Live traffic exported as eval data")
