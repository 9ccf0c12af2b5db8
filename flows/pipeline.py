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

from flows.evaluate import evaluate
from flows.ingest import ingest
from flows.promote import promote
from flows.train import train
from sluice.core.config import Method, SluiceConfig, with_training_knobs
from sluice.core.lake.client import require_commit_id
from sluice.core.pipeline import IngestRequest, PipelineResult, main_commit_after
from sluice.core.training.job import DATA_KIND
from tasks.lakefs import published_files
from tasks.reports import report_pipeline, report_waiting_for_data


@flow(name="pipeline", log_prints=True)
def pipeline(data_ref: str = "main", base_model: str | None = None, method: Method | None = None,
             max_steps: int | None = None, learning_rate: float | None = None,
             ingest_first: list[IngestRequest] = [],  # noqa: B006 (a form default)
             config: SluiceConfig = SluiceConfig()) -> PipelineResult:  # noqa: B008
    """Ingest (optional) → train → evaluate → register → gate → promote.

    Args:
        data_ref: lakeFS branch, tag or commit of the data (pinned to its commit id).
        base_model: A local folder, a Hugging Face id or models:/name@alias (empty: config.training.base_model).
        method: sft or dpo (empty: config.training.method).
        max_steps: Optimizer steps (empty: config.training.max_steps).
        learning_rate: Peak learning rate (empty: config.training.learning_rate).
        ingest_first: Sources to ingest before training (their merge commit is trained on).
        config: Every setting; the fields above, when given, override its training section.
    """
    config = with_training_knobs(config, base_model=base_model, method=method, max_steps=max_steps,
                                 learning_rate=learning_rate)
    ingested = [ingest(source=request.source, kind=request.kind, source_name=request.source_name, config=config)
                for request in ingest_first]
    data_ref = main_commit_after(ingested) or data_ref
    training = train(data_ref=data_ref, config=config)
    evaluation = evaluate(training=training, config=config)
    promotion = promote(training=training, evaluation=evaluation, config=config)
    result = PipelineResult(data_commit=training.data_commit, ingested=ingested, training=training,
                            evaluation=evaluation, promotion=promotion)
    report_pipeline(result, config.lakefs.repository)
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
        report_waiting_for_data(message)
        return None
    return pipeline(data_ref=commit_id, config=config)
