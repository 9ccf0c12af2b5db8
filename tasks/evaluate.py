"""Evaluation tasks: generate answers to the eval set (pinned to a lakeFS
commit) with a model, score them, and record everything in MLflow.

A model is evaluated by its files (a local folder, or a downloaded MLflow
artifact); the candidate, the current champion and, before there is a
champion, the untrained base model are evaluated in the same run on the same
rows, so that the gate compares like with like (never old numbers). An
evaluation is cached by (model identity, eval commit, evaluation settings,
MLflow store), so a rerun on an unchanged commit answers at once.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.runtime import flow_run
from pydantic import BaseModel

from sluice.config import EvaluationConfig, SluiceConfig
from sluice.tracking import config_hash, ensure_experiment, quiet_mlflow, tracking_target
from tasks.finetune import PublishedData

JUDGE_URL_VARIABLE = "SLUICE_JUDGE_BASE_URL"
SCORES_ARTIFACT = "eval/scores.json"


class EvaluatedModel(BaseModel):
    """One model's evaluation on one eval commit (small: ids, numbers, paths)."""

    label: str  # "candidate", "champion", "base model"
    model_identity: str  # what was evaluated: a training run, a model version, a base model fingerprint
    version: str | None = None  # registered model version, when there is one
    eval_commit: str
    run_id: str  # the MLflow run holding this evaluation
    metrics: dict[str, float]
    tracking_uri: str
    samples: int
    generation_tokens_per_second: float
    latency_ms_per_sample_p50: float
    judge_failures: int = 0


# ------------------------------------------------------------------ prompts and generation


def eval_prompts(rows: list[dict[str, Any]], settings: EvaluationConfig) -> list[list[dict[str, str]]]:
    """Each eval row as chat messages, contexts placed by the template."""
    system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
    return [system + [{"role": "user", "content": settings.prompt_template.format(
        contexts=settings.context_separator.join(row["contexts"]), question=row["question"])}] for row in rows]


def generate_answers(model_dir: str, prompts: list[list[dict[str, str]]],
                     settings: EvaluationConfig) -> tuple[list[str], dict[str, float]]:
    """Batched generation (left-padded); the answers and timing figures."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"  # generation continues from the right edge of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if device == "cuda" else
                                                 torch.float32).to(device).eval()
    sampling = ({"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
                if settings.do_sample else {"do_sample": False})
    answers: list[str] = []
    generated_tokens, latencies, started = 0, [], time.perf_counter()
    for first in tqdm(range(0, len(prompts), settings.batch_size), desc="generating", unit="batch"):
        batch = prompts[first:first + settings.batch_size]
        texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in batch]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        batch_started = time.perf_counter()
        with torch.no_grad():
            output = model.generate(**encoded, max_new_tokens=settings.max_new_tokens,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                    **sampling)
        latencies.append((time.perf_counter() - batch_started) / len(batch))
        new = output[:, encoded["input_ids"].shape[1]:]
        generated_tokens += int((new != tokenizer.pad_token_id).sum())
        answers += [a.strip() for a in tokenizer.batch_decode(new, skip_special_tokens=True)]
    seconds = time.perf_counter() - started
    return answers, {"generation_seconds": seconds, "generated_tokens": generated_tokens,
                     "generation_tokens_per_second": generated_tokens / seconds if seconds else 0.0,
                     "latency_ms_per_sample_p50": 1000 * statistics.median(latencies) if latencies else 0.0}


# ------------------------------------------------------------------ scoring


def score_answers(rows: list[dict[str, Any]], answers: list[str],
                  settings: EvaluationConfig) -> tuple[dict[str, list[float]], int]:
    """Per-sample scores for every configured metric (and the judge's, when
    one is configured); the number of failed judge attempts."""
    from sluice.metrics import default_embedder, score_with_judge, score_without_llm

    references = [row["reference"] for row in rows]
    embedder = default_embedder() if "semantic_similarity" in settings.metrics else None  # loaded once
    scores = score_without_llm(answers, references, settings.metrics, embedder=embedder)
    judge = settings.judge
    if judge.model:
        base_url = os.environ.get(JUDGE_URL_VARIABLE)
        if not base_url:
            raise ValueError(f"evaluation.judge.model is {judge.model!r} but {JUDGE_URL_VARIABLE} is not set: "
                             "set it to the judge's OpenAI-compatible base URL, or unset the judge model")
        judged = score_with_judge([row["question"] for row in rows], [list(row["contexts"]) for row in rows],
                                  answers, references, model=judge.model, base_url=base_url,
                                  api_key=os.environ.get("OPENAI_API_KEY"), metrics=judge.metrics,
                                  repeats=judge.repeats, timeout_seconds=judge.timeout_seconds, embedder=embedder)
        if any(judged.failed_attempts.values()):
            get_run_logger().warning("judge calls failed (those samples count as not measured): %s; e.g. %s",
                                     judged.failed_attempts, judged.error_examples)
        scores.update(judged)
        return scores, sum(judged.failed_attempts.values())
    return scores, 0


def _read_rows(data: PublishedData, limit: int | None) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables(pq.read_table(f, columns=["id", "question", "contexts", "reference"])
                             for f in data.local_files)
    rows = table.to_pylist()
    return rows[:limit] if limit else rows


# ------------------------------------------------------------------ the task


def _evaluation_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    config: SluiceConfig = parameters["config"]
    store = tracking_target(config.tracking).tracking_uri
    return "evaluate-" + config_hash(parameters["model_identity"], parameters["data"].commit_id,
                                     config.evaluation, store)[:32]


@task(name="evaluate-model", cache_key_fn=_evaluation_cache_key, persist_result=True)
def evaluate_model(label: str, model_dir: str, model_identity: str, data: PublishedData, config: SluiceConfig,
                   version: str | None = None, training_run_id: str | None = None) -> EvaluatedModel:
    """Generate, score, and log one model's evaluation as its own MLflow run."""
    quiet_mlflow()
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from sluice.metrics import aggregate

    logger = get_run_logger()
    settings = config.evaluation
    rows = _read_rows(data, settings.max_samples)
    answers, timing = generate_answers(model_dir, eval_prompts(rows, settings), settings)
    scores, judge_failures = score_answers(rows, answers, settings)
    metrics = aggregate(scores)
    logger.info("%s: %s (%d samples, %.0f generated tokens/s)", label,
                ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()), len(rows),
                timing["generation_tokens_per_second"])

    target = tracking_target(config.tracking)
    client = MlflowClient(target.tracking_uri)
    experiment_id = ensure_experiment(target, config.tracking.experiment)
    tags = {"sluice.stage": "evaluation", "sluice.evaluated": label, "sluice.model_identity": model_identity,
            "lakefs.repository": data.repository, "lakefs.commit": data.commit_id,
            "lakefs.uri": data.uri(f"{config.data.datasets_prefix}/eval/clean/"),
            "prefect.flow_run_id": str(flow_run.get_id()), "mlflow.runName": f"eval-{label.replace(' ', '-')}"
            f"-{data.commit_id[:8]}", "sluice.model_version": version or "",
            "sluice.training_run_id": training_run_id or ""}
    run = client.create_run(experiment_id, tags={k: v for k, v in tags.items() if v})
    stamp = int(time.time() * 1000)
    finite = {k: v for k, v in {**metrics, **timing}.items() if isinstance(v, int | float) and math.isfinite(v)}
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in finite.items()],
                     params=[Param("eval.samples", str(len(rows))), Param("eval.commit", data.commit_id)]
                     + [Param(f"evaluation.{k}", str(v)[:6000]) for k, v in settings.model_dump(mode="json").items()])
    table = {"id": [r["id"] for r in rows], "question": [r["question"] for r in rows], "prediction": answers,
             "reference": [r["reference"] for r in rows], **{m: [_json_number(x) for x in v] for m, v in scores.items()}}
    client.log_table(run.info.run_id, data=table, artifact_file="eval/samples.json")
    # per-sample scores, for the paired bootstrap against the other models of this run
    client.log_text(run.info.run_id, json.dumps({m: [_json_number(x) for x in v] for m, v in scores.items()}),
                    SCORES_ARTIFACT)
    client.set_terminated(run.info.run_id)
    return EvaluatedModel(label=label, model_identity=model_identity, version=version, eval_commit=data.commit_id,
                          run_id=run.info.run_id, tracking_uri=target.tracking_uri, metrics=metrics, samples=len(rows),
                          generation_tokens_per_second=timing["generation_tokens_per_second"],
                          latency_ms_per_sample_p50=timing["latency_ms_per_sample_p50"],
                          judge_failures=judge_failures)


def _json_number(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def load_scores(evaluation: EvaluatedModel) -> dict[str, list[float]]:
    """Per-sample scores back from the evaluation's run, "not measured" as NaN."""
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=evaluation.run_id, artifact_path=SCORES_ARTIFACT,
                                               tracking_uri=evaluation.tracking_uri)
    stored = json.loads(Path(path).read_text())
    return {m: [math.nan if x is None else float(x) for x in v] for m, v in stored.items()}
