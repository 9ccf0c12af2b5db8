"""An evaluation as an MLflow run: aggregate metrics and timing, the settings,
the per-sample table (``eval/samples.json``) and the per-sample scores that
the paired bootstrap reads back (``eval/scores.json``)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sluice.core import lineage
from sluice.core.config import EvaluationConfig
from sluice.core.evaluation.probes.run import ProbeOutcome
from sluice.core.evaluation.probes.scoring import hide_canaries
from sluice.core.evaluation.results import EvaluatedModel
from sluice.core.registry.logged_model import find_logged_model
from sluice.core.registry.tracking import TrackingTarget, ensure_experiment, mlflow_client

SCORES_ARTIFACT = "eval/scores.json"
PROBES_ARTIFACT = "eval/probes.json"


def _loggable(settings: EvaluationConfig) -> dict[str, Any]:
    """The settings as params, the canaries only counted: a canary in a log is a canary spent."""
    dumped = settings.model_dump(mode="json")
    dumped["probes"] = {**dumped["probes"], "canaries": len(settings.probes.canaries)}
    return dumped


def _json_number(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _evaluated_logged_model_id(target: TrackingTarget, tags: dict[str, str]) -> str | None:
    """The logged model of the training run that made the evaluated model (a candidate, or a champion whose
    identity is its run); None for a base model or a model trained before there were logged models."""
    identity = tags.get(lineage.MODEL_IDENTITY, "")
    training_run = tags.get(lineage.TRAINING_RUN) or (identity.removeprefix("run:") if identity.startswith("run:")
                                                      else None)
    logged = find_logged_model(target, training_run) if training_run else None
    return str(logged.model_id) if logged is not None else None


def record_evaluation(target: TrackingTarget, tags: dict[str, str], rows: list[dict[str, Any]], answers: list[str],
                      scores: dict[str, list[float]], numbers: dict[str, float], settings: EvaluationConfig,
                      data_commit: str, probes: ProbeOutcome | None = None) -> str:
    """The evaluation's MLflow run id."""
    from mlflow.entities import Metric, Param

    client = mlflow_client(target.tracking_uri)
    run = client.create_run(ensure_experiment(target), tags=tags)
    stamp = int(time.time() * 1000)
    finite = {k: v for k, v in numbers.items() if isinstance(v, int | float) and math.isfinite(v)}
    # on the evaluated model's logged model too (when it has one): the MLflow UI's "Logged models" shows them,
    # by eval dataset (the repository's eval set at the data commit)
    model_id = _evaluated_logged_model_id(target, tags)
    dataset = {"dataset_name": f"{tags.get(lineage.REPOSITORY, 'eval')}-eval",
               "dataset_digest": data_commit[:12]} if model_id else {}
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), stamp, 0, model_id=model_id, **dataset)
                                               for k, v in finite.items()],
                     params=[Param("eval.samples", str(len(rows))), Param("eval.data_commit", data_commit)]
                     + [Param("eval.probe_set", probes.probe_set if probes else "off")]
                     + [Param(f"evaluation.{k}", str(v)[:6000]) for k, v in _loggable(settings).items()])
    table = {"id": [r["id"] for r in rows], "question": [r["question"] for r in rows],
             "prediction": [hide_canaries(a, settings.probes.canaries) for a in answers],
             "reference": [r["reference"] for r in rows], **{m: [_json_number(x) for x in v] for m, v in scores.items()}}
    client.log_table(run.info.run_id, data=table, artifact_file="eval/samples.json")
    if probes is not None:  # answers masked: no canary, no PII in clear
        client.log_table(run.info.run_id, data=probes.table, artifact_file=PROBES_ARTIFACT)
    # per-sample scores, for the paired bootstrap against the other models of this run
    client.log_text(run.info.run_id, json.dumps({m: [_json_number(x) for x in v] for m, v in scores.items()}),
                    SCORES_ARTIFACT)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def load_scores(evaluation: EvaluatedModel) -> dict[str, list[float]]:
    """Per-sample scores back from the evaluation's run, "not measured" as NaN."""
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=evaluation.run_id, artifact_path=SCORES_ARTIFACT,
                                               tracking_uri=evaluation.tracking_uri)
    stored = json.loads(Path(path).read_text())
    return {m: [math.nan if x is None else float(x) for x in v] for m, v in stored.items()}


class SampleAnswers(BaseModel):
    """One eval question, its reference answer, and what two models answered."""

    question: str
    reference: str
    answers: dict[str, str]  # model label → its answer


def sample_answers(models: list[EvaluatedModel], index: int = 0) -> SampleAnswers:
    """The ``index``-th eval sample as each model answered it (from the evaluations' ``eval/samples.json``)."""
    import mlflow

    answers: dict[str, str] = {}
    question = reference = ""
    for model in models:
        path = mlflow.artifacts.download_artifacts(run_id=model.run_id, artifact_path="eval/samples.json",
                                                   tracking_uri=model.tracking_uri)
        table = json.loads(Path(path).read_text())
        row = dict(zip(table["columns"], table["data"][index], strict=True))
        question, reference = row["question"], row["reference"]
        answers[model.label] = row["prediction"]
    return SampleAnswers(question=question, reference=reference, answers=answers)
