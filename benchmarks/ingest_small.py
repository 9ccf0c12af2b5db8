"""A small ingest as a user runs it: ``sluice ingest FILE.jsonl --kind sft``
of a 40-row file, wall time of the whole command (process start to exit),
where the fixed costs are everything: imports, Prefect's temporary server,
the embedded lakeFS, Great Expectations.

Each run ingests 40 new demo chats (so every run publishes). Modes:
``--stack DIR`` runs beside a running ``sluice up`` stack (the command then
uses its Prefect server and lakeFS); without it, the command starts its own.
``--tree DIR`` runs another checkout's code (e.g. an older commit) with this
venv, for a before/after in one session.

    .venv/bin/python benchmarks/ingest_small.py [--runs 5] [--stack .sluice/stack] [--tree DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stack", type=Path, help="state dir of a running `sluice up` stack to use")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose code runs")
    parser.add_argument("--config", type=Path, help="-c file passed to each command (where lakeFS/MLflow keep data)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    chats = (ROOT / "demo" / "data" / "sft.jsonl").read_text().splitlines()
    walls = []
    with tempfile.TemporaryDirectory(prefix="sluice-ingest-small-") as scratch:
        work = Path(scratch)
        env = {**os.environ, "PYTHONPATH": str(args.tree), "HF_HUB_OFFLINE": "1",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "SLUICE_STACK_DIR": str(args.stack.resolve()) if args.stack else str(work / "no-stack")}
        config = ["-c", str(args.config)] if args.config else [f"lakefs.embedded_data_dir={work / 'lakefs'}"]
        for run in range(args.runs):
            rows = work / f"rows-{run}.jsonl"
            rows.write_text("\n".join(chats[40 * run:40 * (run + 1)]) + "\n")
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "sluice", "ingest", str(rows), "--kind", "sft", *config,
                                   f"data.work_dir={work / 'work'}"], cwd=args.tree, env=env, capture_output=True,
                                  text=True)
            walls.append(time.perf_counter() - started)
            if done.returncode != 0 or "publish" not in done.stdout:
                raise SystemExit(f"run {run} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            print(f"run {run + 1}: {walls[-1]:.2f} s", flush=True)
    report = {"tree": str(args.tree), "stack": str(args.stack) if args.stack else None, "rows": 40,
              "runs_s": [round(w, 2) for w in walls], "median_s": round(statistics.median(walls), 2),
              "best_s": round(min(walls), 2)}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
