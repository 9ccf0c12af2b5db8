"""The GPU check: SmolLM2-135M-Instruct fine-tuned on the demo chats on one
GPU, through the project's training process and through plain TRL, for each
way the project trains: full fine-tuning, LoRA, QLoRA (4-bit base, needs
bitsandbytes) and DeepSpeed ZeRO-2 (the shipped accelerate config, needs the
[deepspeed] extra). Prints tokens/s, MFU and the ratio against plain TRL.

Run by ``benchmarks/gpu_check.sh`` on a GPU machine (``device`` tool);
it needs a CUDA torch with transformers, trl, peft, datasets, accelerate,
gguf (and deepspeed, bitsandbytes for those modes) importable.

    python benchmarks/gpu_check.py [--steps 30] [--modes full,lora,qlora,zero2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16, from NVIDIA's data sheets
BATCH, MAX_LENGTH, LEARNING_RATE = 16, 512, 2e-4


def demo_rows(out: Path) -> Path:
    """The demo sft chats as the canonical Parquet file the training process reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sluice.core.data.readers import discover, read_source_file

    tables = [t for f in discover(str(ROOT / "demo" / "data" / "sft.jsonl"))
              for t in read_source_file(f, "sft", "demo", 10_000)]
    pq.write_table(pa.concat_tables(tables), out)
    return out


def run_project(mode: str, model: Path, rows: Path, work: Path, steps: int) -> dict:
    from sluice.core.config import TrainingConfig
    from sluice.core.training.job import TrainingJob, accelerate_command

    training = TrainingConfig(base_model=str(model), finetune="full" if mode == "full" else
                              "qlora" if mode == "qlora" else "lora", deepspeed="zero2" if mode == "zero2" else None,
                              max_steps=steps, batch_size=BATCH, max_length=MAX_LENGTH, learning_rate=LEARNING_RATE,
                              save_steps=10 * steps, logging_steps=max(1, steps // 5), assistant_only_loss=False)
    job = TrainingJob(key=mode, base_model=str(model), data_files=[str(rows)], output_dir=str(work / mode),
                      training=training)
    (work / mode).mkdir(parents=True)
    (work / mode / "job.json").write_text(job.model_dump_json())
    started = time.perf_counter()
    subprocess.run(accelerate_command(training, work / mode / "job.json", use_gpus=True), check=True, cwd=ROOT)
    result = json.loads((work / mode / "result.json").read_text())
    return {"tokens_per_s": result["tokens_per_second"], "wall_s": time.perf_counter() - started,
            "peak_rss_mb": result["peak_rss_mb"],
            "cuda_peak_memory_mb": result.get("final_metrics", {}).get("cuda_peak_memory_mb")}


def run_plain(mode: str, model: Path, rows: Path, work: Path, steps: int) -> dict | None:
    if mode not in ("full", "lora"):
        return None  # plain TRL here runs full and LoRA; QLoRA and ZeRO-2 are compared with the project's LoRA
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plain_trl_sft.py"), str(model), str(rows),
                           str(work / f"plain-{mode}"), "--steps", str(steps), "--batch-size", str(BATCH),
                           "--max-length", str(MAX_LENGTH), "--learning-rate", str(LEARNING_RATE),
                           "--full-sequence-loss", *(["--lora"] if mode == "lora" else [])],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"tokens_per_s": result["tokens"] / result["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--modes", default="full,lora,qlora,zero2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    from sluice.core.models.catalog import fetch_model

    assert torch.cuda.is_available(), "the GPU check needs a CUDA GPU"
    gpu = torch.cuda.get_device_name(0)
    peak = next((flops for name, flops in PEAK_BF16_FLOPS.items() if name in gpu), None)
    report: dict = {"gpu": gpu, "steps": args.steps, "batch_size": BATCH, "max_length": MAX_LENGTH, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="sluice-gpu-check-") as scratch:
        work = Path(scratch)
        card = fetch_model("smollm2-135m-instruct", work / "models")
        model, rows = work / "models" / "smollm2-135m-instruct", demo_rows(work / "rows.parquet")
        for mode in args.modes.split(","):
            try:
                ours = run_project(mode, model, rows, work, args.steps)
                plain = run_plain(mode, model, rows, work, args.steps)
            except (subprocess.CalledProcessError, ImportError) as error:  # a missing extra: say so, go on
                report["modes"][mode] = {"error": str(error)[-500:]}
                print(f"{mode:<6} could not run: {error}", flush=True)
                continue
            mfu = 6 * card.parameters * ours["tokens_per_s"] / peak if peak else None
            entry = {**ours, "mfu": mfu, "plain_tokens_per_s": plain and plain["tokens_per_s"],
                     "ratio_to_plain": plain and ours["tokens_per_s"] / plain["tokens_per_s"]}
            report["modes"][mode] = entry
            print(f"{mode:<6} {ours['tokens_per_s']:>10,.0f} tokens/s  MFU {mfu or 0:.1%}  "
                  f"against plain TRL {entry['ratio_to_plain'] or float('nan'):.2f}", flush=True)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
