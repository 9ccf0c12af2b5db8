"""Evaluate one model on the eval set of a data commit: generate, score,
record. The candidate, the champion and (before there is one) the base model
go through the same steps on the same rows, so the gate compares like with
like, never with old numbers."""

from __future__ import annotations

import logging
from typing import Any

from sluice.core import lineage
from sluice.core.config import EvaluationConfig
from sluice.core.evaluation.generation import eval_prompts, generate_answers
from sluice.core.evaluation.metrics.text import aggregate
from sluice.core.evaluation.probes.known_pii import KnownPii
from sluice.core.evaluation.probes.run import ProbeOutcome, run_probes
from sluice.core.evaluation.record import record_evaluation
from sluice.core.evaluation.results import EvaluatedModel
from sluice.core.evaluation.scoring import score_answers
from sluice.core.lake.published import PublishedData
from sluice.core.lineage import FlowRun
from sluice.core.registry.tracking import TrackingTarget

log = logging.getLogger(__name__)


def read_eval_rows(data: PublishedData, limit: int | None) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables(pq.read_table(f, columns=["id", "question", "contexts", "reference"])
                             for f in data.local_files)
    rows = table.to_pylist()
    return rows[:limit] if limit else rows


def evaluate_model(label: str, model_dir: str, model_identity: str, data: PublishedData, settings: EvaluationConfig,
                   target: TrackingTarget, flow_run: FlowRun, *, version: str | None = None,
                   training_run_id: str | None = None, known_pii: KnownPii | None = None,
                   logger: logging.Logger | logging.LoggerAdapter = log) -> EvaluatedModel:
    """Generate, score, and record one model's evaluation as its own MLflow run; the probe set runs next to
    the eval set (``known_pii``: the training data's redacted PII, without it no PII leak is measured)."""
    rows = read_eval_rows(data, settings.max_samples)
    answers, timing = generate_answers(model_dir, eval_prompts(rows, settings), settings)
    scores, judge_failures = score_answers(rows, answers, settings, logger)
    probes = _probes(model_dir, settings, known_pii, label, logger)
    metrics = {**aggregate(scores), **(probes.metrics if probes else {})}
    logger.info("%s: %s (%d samples, %.0f generated tokens/s)", label,
                ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()), len(rows),
                timing["generation_tokens_per_second"])
    tags = lineage.evaluation_run_tags(flow_run, role=label, model_identity=model_identity,
                                       repository=data.repository, data_commit=data.data_commit, data_uri=data.uri,
                                       model_version=version, training_run=training_run_id)
    run_id = record_evaluation(target, tags, rows, answers, scores, {**metrics, **timing}, settings,
                               data.data_commit, probes)
    return EvaluatedModel(label=label, model_identity=model_identity, version=version, data_commit=data.data_commit,
                          run_id=run_id, tracking_uri=target.tracking_uri, metrics=metrics, samples=len(rows),
                          generation_tokens_per_second=timing["generation_tokens_per_second"],
                          latency_ms_per_sample_p50=timing["latency_ms_per_sample_p50"],
                          judge_failures=judge_failures, probe_set=probes.probe_set if probes else None)


def _probes(model_dir: str, settings: EvaluationConfig, known_pii: KnownPii | None, label: str,
            logger: logging.Logger | logging.LoggerAdapter) -> ProbeOutcome | None:
    if not settings.probes.enabled:
        logger.info("%s: probes off (evaluation.probes.enabled): no probe metrics", label)
        return None
    if known_pii is None:
        logger.warning("%s: the training data's PII digests were not given: probe_pii_leak_rate is not measured",
                       label)
    elif not known_pii.complete:
        logger.warning("%s: batches %s redacted PII but kept no digests (ingested before they were kept): "
                       "probe_pii_leak_rate is not measured; re-ingest them to measure it", label,
                       ", ".join(known_pii.undigested_batches))
    return run_probes(model_dir, settings, known_pii)
