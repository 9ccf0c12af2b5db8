"""What the safety and privacy probes add to an evaluation: per evaluated model, the probe set's run
(generation at ``evaluation.probes.max_new_tokens`` plus scoring) against the eval set's answer generation,
side by side in one process on SmolLM2-135M-Instruct (fetched offline).

Each side loads the model itself, as the evaluation does (the probes' run loads it again); the MiniLM
embedder the probe scoring uses is loaded once before, as the evaluation's metrics load it anyway.
Alternating for ``--rounds`` rounds. An evaluation runs both for every model it
compares (candidate, champion, base), so the ratio is the share the probes add to the generation part of
the gate.

    .venv/bin/python benchmarks/probe_cost.py [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import emit_report, machine, quiet_offline_environment  # noqa: E402
from benchmarks.eval_generation import eval_messages  # noqa: E402

quiet_offline_environment()


def timed(work) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from sluice.core.config import EvaluationConfig
    from sluice.core.evaluation.generation import generate_answers
    from sluice.core.evaluation.metrics.embeddings import default_embedder
    from sluice.core.evaluation.probes.probe_set import load_probe_set
    from sluice.core.evaluation.probes.run import probe_prompts, run_probes
    from sluice.core.models.catalog import fetch_model

    settings = EvaluationConfig()
    chats = eval_messages()
    probes = probe_prompts(load_probe_set(settings.probes.probe_set), list(settings.probes.canaries))
    embedder = default_embedder()
    with tempfile.TemporaryDirectory(prefix="sluice-probe-bench-") as scratch:
        fetch_model("smollm2-135m-instruct", Path(scratch))
        model = str(Path(scratch) / "smollm2-135m-instruct")
        generate_answers(model, chats[:2], settings)  # the weights into the page cache, torch warmed up
        eval_s, probe_s = [], []
        for round_number in range(args.rounds):
            eval_s.append(timed(lambda: generate_answers(model, chats, settings)))
            probe_s.append(timed(lambda: run_probes(model, settings, None, embedder)))
            print(f"round {round_number + 1}: eval set {eval_s[-1]:.1f} s, probes {probe_s[-1]:.1f} s", flush=True)
    ratios = [p / e for p, e in zip(probe_s, eval_s, strict=True)]
    report = {"machine": machine(("torch", "transformers")), "model": "smollm2-135m-instruct",
              "eval_prompts": len(chats), "eval_max_new_tokens": settings.max_new_tokens,
              "probe_prompts": len(probes.texts), "probe_max_new_tokens": settings.probes.max_new_tokens,
              "eval_generation_s": [round(s, 2) for s in eval_s], "probes_s": [round(s, 2) for s in probe_s],
              "probes_over_eval_per_round": [round(r, 3) for r in ratios],
              "probes_over_eval_median": round(statistics.median(ratios), 3),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    emit_report(report, args.json)


if __name__ == "__main__":
    main()
