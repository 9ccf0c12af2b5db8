"""The demo pipeline's wall time by stage, its overhead outside training and
evaluation, and a cached rerun against the first run.

Runs the ``demo`` flow (what ``make demo`` runs: build the tiny model if
missing, ingest the demo data through write–audit–publish, train, evaluate
candidate and base model, register, gate, promote) in this process under a
Prefect test API, against a fresh embedded lakeFS and a fresh MLflow store,
with ``configs/experiments/demo.yaml``; then runs it again unchanged (every
stage should be reused). Stage times come from Prefect's own records: the
duration of every task run, grouped by stage.

Reported: wall time per run; per stage; "overhead" = wall time minus the
``train-model`` and ``evaluate-model`` task runs, with and without the demo's
one-time tiny-model build (targets: ≤ 10 s, and the cached rerun ≤ 5 % of the
first run).

Run:

    .venv/bin/python benchmarks/pipeline_stages.py [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import embedded_lakefs, machine, quiet_offline_environment  # noqa: E402

quiet_offline_environment()
STAGES = {  # task name prefix → stage
    "ensure-tiny-base-model": "build tiny model",
    "ensure-repository": "ingest", "pin-main": "ingest", "create-branch": "ingest", "prepare-batch": "ingest",
    "upload": "ingest", "validate": "ingest", "commit": "ingest", "merge": "ingest", "delete-branch": "ingest",
    "load-contract": "ingest", "find-sources": "ingest", "read-existing": "ingest",
    "pin-published-data": "pin data", "describe-base-model": "train (other)", "train-model": "train",
    "download-training-model": "evaluate (other)", "download-model-version": "evaluate (other)",
    "evaluate-model": "evaluate", "compare-models": "evaluate (other)",
    "register-model-version": "register + gate + promote", "move-aliases": "register + gate + promote",
    "tag-version": "register + gate + promote", "reconcile-ledger": "register + gate + promote",
}


SUBFLOWS = ("pipeline", "train", "evaluate", "promote", "ingest", "demo")  # their wrapper task runs overlap the rest


def stage_of(task_name: str) -> str | None:
    if task_name.rsplit("-", 1)[0] in SUBFLOWS:
        return None
    for prefix, stage in STAGES.items():
        if task_name.startswith(prefix):
            return stage
    return "ingest" if task_name.startswith(("clean-up-work-dir", "find-source-files", "resolve-commit")) \
        else f"other ({task_name.rsplit('-', 1)[0]})"


async def task_durations(since) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    runs = []
    async with get_client() as client:
        while True:  # the API pages at 200
            page = await client.read_task_runs(task_run_filter=TaskRunFilter(
                start_time=TaskRunFilterStartTime(after_=since)), limit=200, offset=len(runs))
            runs += page
            if len(page) < 200:
                break
    totals: dict[str, float] = defaultdict(float)
    for run in runs:
        stage = stage_of(run.name)
        if stage and run.start_time and run.end_time:
            totals[stage] += (run.end_time - run.start_time).total_seconds()
    return dict(totals)


def run_once(config) -> dict:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from flows.demo import demo

    since = datetime.now(UTC)
    started = time.perf_counter()
    result = demo(config=config)
    wall = time.perf_counter() - started
    stages = asyncio.run(task_durations(since))
    inner = stages.get("train", 0.0) + stages.get("evaluate", 0.0)
    return {"wall_s": round(wall, 2), "stages_s": {k: round(v, 2) for k, v in sorted(stages.items())},
            "overhead_outside_train_and_eval_s": round(wall - inner, 2),
            # the same without the demo's one-time build of the tiny base model: the pipeline's own overhead
            "pipeline_overhead_s": round(wall - inner - stages.get("build tiny model", 0.0), 2),
            "decision": result.promotion.summary(), "training_reused": result.training.reused,
            "rougeL": result.evaluation.candidate.metrics.get("rougeL")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="20 training steps instead of the demo's 200")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from sluice.core.config import load_config

    overrides = ["training.max_steps=20"] if args.quick else []
    with tempfile.TemporaryDirectory(prefix="sluice-pipeline-bench-") as scratch, \
            prefect_test_harness(server_startup_timeout=60):
        tmp = Path(scratch)
        with embedded_lakefs(tmp / "lakefs"):
            config = load_config([ROOT / "configs" / "experiments" / "demo.yaml"], overrides + [
                f"training.base_model={tmp / 'tiny'}", f"training.output_dir={tmp / 'training'}",
                f"tracking.embedded_dir={tmp / 'mlflow'}", f"data.work_dir={tmp / 'work'}",
                f"data.demo_source={ROOT / 'demo' / 'data'}"])
            first = run_once(config)
            print("first run:", json.dumps(first), flush=True)
            again = run_once(config)
            print("rerun:", json.dumps(again), flush=True)
    report = {"machine": machine(("torch", "transformers", "trl", "mlflow", "prefect", "ragas")),
              "training_steps": config.training.max_steps, "first": first, "rerun": again,
              "rerun_over_first": round(again["wall_s"] / first["wall_s"], 4),
              "targets": {"overhead_s": 10, "rerun_over_first": 0.05}}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
