"""Evaluation generation: the project's ``generate_answers`` (what the
``evaluate`` flow runs) against plain batched ``model.generate`` on the same
prompts, with SmolLM2-135M-Instruct (fetched offline).

Both get the demo's eval questions rendered by the model's own chat template,
left-padded batches of ``evaluation.batch_size`` (16), greedy, at most
``evaluation.max_new_tokens`` (32) new tokens, stopping at the template's
end of turn. Each side runs in its own process (so peak RSS is its own),
alternating for ``--rounds`` rounds. Reported: generated tokens/s (tokens
up to and including the end-of-turn token), the ratio, peak RSS. Target:
ratio ≥ 0.9.

    .venv/bin/python benchmarks/eval_generation.py [--rounds 3] [--json out.json]
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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, quiet_offline_environment  # noqa: E402

quiet_offline_environment()
TARGET_RATIO = 0.9


def eval_messages() -> list[list[dict[str, str]]]:
    from sluice.core.config import EvaluationConfig
    from sluice.core.evaluation.generation import eval_prompts

    rows = [json.loads(line) for line in (ROOT / "demo" / "data" / "eval.jsonl").read_text().splitlines()]
    return eval_prompts(rows, EvaluationConfig())


def run_project(model: str) -> dict:
    """The evaluate flow's generation step as it runs; its own timing covers the generation loop, as the plain
    side's does (model loading left out of both)."""
    from sluice.core.config import EvaluationConfig
    from sluice.core.evaluation.generation import generate_answers

    settings = EvaluationConfig(max_new_tokens=32)
    _, timing = generate_answers(model, eval_messages(), settings)
    return {"tokens": timing["generated_tokens"], "seconds": timing["generation_seconds"]}


def run_plain(model: str) -> dict:
    """The same prompts through transformers alone: tokenizer, left padding, model.generate per batch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.padding_side = "left"
    network = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompts = eval_messages()
    tokens, started = 0, time.perf_counter()
    for first in range(0, len(prompts), 16):
        texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                 for m in prompts[first:first + 16]]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = network.generate(**encoded, max_new_tokens=32, do_sample=False, eos_token_id=end_of_turn,
                                   pad_token_id=tokenizer.pad_token_id)
        tokens += int((out[:, encoded["input_ids"].shape[1]:] != tokenizer.pad_token_id).sum())
    return {"tokens": tokens, "seconds": time.perf_counter() - started}


def child(side: str, model: str) -> None:
    result = run_project(model) if side == "project" else run_plain(model)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from sluice.core.models.catalog import fetch_model

    with tempfile.TemporaryDirectory(prefix="sluice-eval-bench-") as scratch:
        fetch_model("smollm2-135m-instruct", Path(scratch))
        model = str(Path(scratch) / "smollm2-135m-instruct")
        runs: dict[str, list[dict]] = {"plain": [], "project": []}
        for round_number in range(args.rounds):
            for side in ("plain", "project"):
                done = subprocess.run([sys.executable, __file__, "--child", side, model], capture_output=True,
                                      text=True, check=True, cwd=ROOT)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result["tokens_per_s"] = result["tokens"] / result["seconds"]
                runs[side].append(result)
            print(f"round {round_number + 1}: plain {runs['plain'][-1]['tokens_per_s']:.1f} tokens/s, project "
                  f"{runs['project'][-1]['tokens_per_s']:.1f} tokens/s", flush=True)
    ratios = [p["tokens_per_s"] / q["tokens_per_s"] for p, q in zip(runs["project"], runs["plain"], strict=True)]
    report = {"machine": machine(("torch", "transformers")), "prompts": 60, "batch_size": 16, "max_new_tokens": 32,
              "plain": {k: round(statistics.median(r[k] for r in runs["plain"]), 2) for k in runs["plain"][0]},
              "project": {k: round(statistics.median(r[k] for r in runs["project"]), 2) for k in runs["project"][0]},
              "ratio_per_round": [round(r, 3) for r in ratios], "ratio_median": round(statistics.median(ratios), 3),
              "target_ratio": TARGET_RATIO}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
