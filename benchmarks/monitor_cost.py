"""The monitor's cost on a large window: 100,000 logged requests against the demo's training prompts.

A request log of ``--requests`` records (default 100,000; the format ``sluice serve`` writes:
one JSON line per answer with its time, status, model version, prompt and completion) is written
for one hour, the prompts drawn from the demo's eval questions and SFT prompts, a tenth of them
answered by another version and a hundredth with status 429. Then what the ``monitor`` flow's
report task does is timed, step by step, in this process: reading the window
(:func:`read_window`), the training prompts, MiniLM's load, and :func:`build_report` (length,
embedding and out-of-domain statistics on at most ``monitoring.sample_size`` prompts per side,
the answer signals on all). Peak RSS (ru_maxrss) is read at the end. Writing the log is not
counted.

Side by side: the same report on a window of 1,000 requests, so the ratio shows what grows with
traffic (reading) and what does not (the sampled statistics).

Run:

    .venv/bin/python benchmarks/monitor_cost.py                 # about a minute on 2 cores
    .venv/bin/python benchmarks/monitor_cost.py --requests 20000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import emit_report, machine, quiet_offline_environment  # noqa: E402

quiet_offline_environment()
START = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def demo_prompts() -> tuple[list[str], list[str]]:
    """(questions for traffic, training prompts): the demo's eval questions and its SFT user turns."""
    from sluice.core.monitoring.traffic import user_turns

    rows = [json.loads(line) for line in (ROOT / "demo" / "data" / "eval.jsonl").read_text().splitlines() if line]
    questions = [row["question"] for row in rows]
    training = []
    for line in (ROOT / "demo" / "data" / "sft.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            training.extend(user_turns(row.get("messages") or row.get("conversations") or []) or
                            [str(row.get("prompt") or row.get("instruction") or "")])
    return questions, [t for t in training if t]


def write_log(path: Path, count: int, questions: list[str]) -> None:
    draw = random.Random(16)
    step = 3600 / count
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            moment = (START + timedelta(seconds=i * step)).isoformat()
            status = 429 if i % 100 == 99 else 200
            version = "2" if i % 10 == 9 else "1"
            question = draw.choice(questions)
            handle.write(json.dumps({"id": f"chatcmpl-{i}", "time": moment, "status": status, "model_version": version,
                                     "prompt": [{"role": "user", "content": question}],
                                     "completion": "The sluice opens at 06:00." if status == 200 else None}) + "\n")


def measure(log: Path, training: list[str], embed, settings) -> dict:  # type: ignore[no-untyped-def]
    from sluice.core.monitoring.report import build_report
    from sluice.core.monitoring.traffic import Window, read_window

    window = Window(start=START, end=START + timedelta(hours=1))
    started = time.perf_counter()
    traffic = read_window(log, window, "1")
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    report = build_report(traffic, training, [], embed, settings, model_name="bench-model", data_commit="c0ffee")
    return {"answered_by_served_version": len(traffic.prompts), "other_versions": traffic.other_versions,
            "errors": traffic.errors, "read_window_s": round(read_s, 2),
            "build_report_s": round(time.perf_counter() - started, 2), "log_mb": round(log.stat().st_size / 1e6, 1),
            "embedding": report.embedding.model_dump() if report.embedding else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    from sluice.core.config.monitoring import MonitoringConfig

    settings = MonitoringConfig()
    questions, training = demo_prompts()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-monitor-") as tmp:
        small, large = Path(tmp) / "small.jsonl", Path(tmp) / "large.jsonl"
        write_log(small, 1000, questions)
        write_log(large, args.requests, questions)
        started = time.perf_counter()
        from sluice.core.evaluation.metrics.embeddings import default_embedder

        embed = default_embedder().embed
        embed(["warm up"])
        load_s = time.perf_counter() - started
        results = {"1000": measure(small, training, embed, settings),
                   str(args.requests): measure(large, training, embed, settings)}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"machine": machine(["numpy", "scipy", "sentence-transformers"]), "sample_size": settings.sample_size,
              "training_prompts": len(training), "minilm_load_s": round(load_s, 2), "windows": results,
              "peak_rss_mb": round(peak_mb, 1)}
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1), file=sys.stderr)
    emit_report(report, args.json)


if __name__ == "__main__":
    main()
