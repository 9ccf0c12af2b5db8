"""Serving throughput: ``sluice serve`` against ``mlflow models serve``.

One tiny model (``sluice model init-tiny`` defaults, seed 1) is registered
as version 1 of a model in a temporary MLflow store (sqlite + local
artifacts), with a second tiny model (seed 2) as version 2; @champion → 1.
Two servers run side by side in the same session, each its own process on
loopback:

(a) ``sluice serve`` for ``models:/bench-model@champion`` — dynamic batching
    (``serving.max_batch_size``, default 8; ``serving.batch_wait_ms`` 5);
(b) ``mlflow models serve --env-manager local`` for the same model folder
    saved with MLflow's transformers flavour (a ``text-generation``
    pipeline, greedy) and logged to version 1's run — one worker, as shipped:
    each request is its own ``pipeline(...)`` call on a thread.

Both get the same prompts (demo eval questions in the chat template,
rendered to text, sent as a plain completion prompt: ``/v1/completions`` and
``/invocations``), greedy, the same ``max_tokens``, at concurrency 1, 8 and
32, alternating (a) and (b) per level after a warm-up. Reported: requests/s,
generated tokens/s (ours from ``usage``; MLflow's by tokenizing the text it
returns), p50/p99 latency, failures.

Then the hot swap under load: requests at concurrency 8 against (a) while
@champion moves to version 2 and ``POST /admin/reload`` is called; failures
(expected 0), requests in flight during the reload, and the versions the
answers report before and after.

With ``--model smollm2`` both versions are SmolLM2-135M-Instruct (fetched
offline; ``--model-dir DIR`` serves any Hugging Face folder instead, e.g. the
demo's champion), so the servers carry a real 135M-parameter model. Each
server's peak RSS is read from /proc at the end.

Run:

    .venv/bin/python benchmarks/serving_throughput.py               # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/serving_throughput.py --model smollm2 --quick
    .venv/bin/python benchmarks/serving_throughput.py --quick       # fewer requests
    .venv/bin/python benchmarks/serving_throughput.py --json out.json

The JSON report goes to stdout (and to ``--json``); the readable table to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
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

from benchmarks._common import machine, quiet_offline_environment  # noqa: E402
from sluice.shell.stack import free_port  # noqa: E402

quiet_offline_environment()
MODEL_NAME = "bench-model"
CONCURRENCY = (1, 8, 32)
FULL_REQUESTS = {1: 24, 8: 64, 32: 128}
QUICK_REQUESTS = {1: 8, 8: 24, 32: 48}
WARMUP_REQUESTS = 4


def say(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


def build_models(work: Path, model: str, model_dir: Path | None) -> dict[str, Path]:
    """The folders of versions 1 and 2: two tiny models, or one real model twice (a swap still reloads)."""
    if model_dir is not None:
        return {"1": model_dir, "2": model_dir}
    if model == "smollm2":
        from sluice.core.models.catalog import fetch_model

        fetch_model("smollm2-135m-instruct", work / "models")
        return {"1": work / "models" / "smollm2-135m-instruct", "2": work / "models" / "smollm2-135m-instruct"}
    from sluice.core.models.tiny_model import build_tiny_model

    corpus = sorted((ROOT / "demo" / "data").glob("*.jsonl"))
    return {version: Path(build_tiny_model(work / f"tiny-seed-{seed}", corpus, seed=seed).path)
            for version, seed in (("1", 1), ("2", 2))}


def register(tracking_uri: str, artifact_root: str, folders: dict[str, Path]) -> dict[str, str]:
    """Versions 1 and 2 of MODEL_NAME from the folders (logged as run artifacts); @champion → 1.
    Returns version → run id."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("serving-bench", artifact_location=f"{artifact_root}/serving-bench")
    client.create_registered_model(MODEL_NAME)
    runs = {}
    for version, folder in folders.items():
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "model")
        client.set_terminated(run.info.run_id)
        made = client.create_model_version(MODEL_NAME, source=f"{run.info.artifact_uri}/model",
                                           run_id=run.info.run_id)
        assert str(made.version) == version, (made.version, version)
        runs[version] = run.info.run_id
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")
    return runs


def log_mlflow_transformers_model(tracking_uri: str, run_id: str, folder: Path, work: Path,
                                  max_tokens: int) -> str:
    """The same folder as an MLflow transformers-flavour model in the run; its runs:/ URI.

    MLflow 3.17 cannot save a local checkpoint folder as-is with transformers 5 (its task
    metadata lookup fails), so the folder is loaded into a ``text-generation`` pipeline and that
    is saved; the signature declares the generation params so ``/invocations`` honours them."""
    import mlflow.transformers
    import transformers
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    pipeline = transformers.pipeline("text-generation", model=str(folder), tokenizer=str(folder))
    signature = infer_signature(["a prompt"], ["an answer"], params={
        "max_new_tokens": max_tokens, "do_sample": False, "return_full_text": False})
    path = work / "mlflow-transformers-model"
    mlflow.transformers.save_model(pipeline, path=str(path), task="text-generation", signature=signature,
                                   pip_requirements=["transformers", "torch"])
    MlflowClient(tracking_uri).log_artifacts(run_id, str(path), "mlflow-transformers-model")
    return f"runs:/{run_id}/mlflow-transformers-model"


def prompts(folder: Path, count: int = 32) -> list[str]:
    """Demo eval questions in the evaluation prompt, rendered with the model's chat template."""
    from transformers import AutoTokenizer

    from sluice.core.config import EvaluationConfig

    settings = EvaluationConfig()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = [json.loads(line) for line in (ROOT / "demo" / "data" / "eval.jsonl").read_text().splitlines()
            if line.strip()][:count]
    texts = []
    for row in rows:
        user = settings.prompt_template.format(contexts=settings.context_separator.join(row["contexts"]),
                                               question=row["question"])
        messages = [{"role": "system", "content": settings.system_prompt or ""}, {"role": "user", "content": user}]
        texts.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return texts


# ------------------------------------------------------------------ the servers


def start_sluice(work: Path, env: dict[str, str], max_batch_size: int, *, overrides: tuple[str, ...] = (),
                 nice: int | None = None) -> tuple[subprocess.Popen, str]:
    """``sluice serve`` on a free port with the benchmark's settings plus ``overrides``; at ``nice`` (a raised
    priority needs root, so only as root) to keep a busy machine's other work from timing it."""
    niced = ["nice", "-n", str(nice)] if nice is not None and os.geteuid() == 0 else []
    with (work / "sluice-serve.log").open("w") as log:  # the child keeps its own copy of the handle
        process = subprocess.Popen(
            [*niced, sys.executable, "-m", "sluice", "serve", "--port", "0", f"registry.model_name={MODEL_NAME}",
             f"serving.state_dir={work / 'serving-state'}", f"serving.max_batch_size={max_batch_size}",
             "serving.watch_seconds=3600", "serving.max_tokens_limit=256", *overrides],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=work)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"at (http://[\d.]+:\d+)/v1", line)
    if not match:
        process.kill()
        raise SystemExit(f"sluice serve did not start: {line}\n{(work / 'sluice-serve.log').read_text()[-3000:]}")
    return process, match.group(1)


def start_mlflow(work: Path, env: dict[str, str], model_uri: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with (work / "mlflow-serve.log").open("w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
             "local", "-h", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    return process, f"http://127.0.0.1:{port}"


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a live process and its children, added up (mlflow models serve runs
    the model in a uvicorn child): an upper bound, as if every peak came at once."""
    import psutil

    total = 0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status if line.startswith("VmHWM")), 0)
    return round(total / 1024, 1) if total else None


def wait_ready(url: str, path: str, process: subprocess.Popen, log: Path, launched: float,
               timeout: float = 300) -> float:
    """Seconds from launch until ``path`` answers 200."""
    import httpx

    while time.perf_counter() - launched < timeout:
        if process.poll() is not None:
            raise SystemExit(f"server at {url} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}{path}", timeout=5).status_code == 200:
                return time.perf_counter() - launched
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server at {url} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ------------------------------------------------------------------ load


class Target:
    def __init__(self, name: str, url: str, max_tokens: int):
        self.name, self.url, self.max_tokens = name, url, max_tokens
        # generated tokens per answer text, from sluice's usage: MLflow returns only text, and
        # re-tokenizing a random model's text overcounts (byte fragments decode to U+FFFD)
        self.tokens_of: dict[str, int] = {}

    async def answer(self, client: Any, prompt: str) -> tuple[str, int | None, str | None]:
        """One request: the generated text, its token count (sluice) and the version header."""
        if self.name == "sluice":
            response = await client.post(f"{self.url}/v1/completions", json={
                "model": MODEL_NAME, "prompt": prompt, "max_tokens": self.max_tokens, "temperature": 0})
            response.raise_for_status()
            body = response.json()
            return (body["choices"][0]["text"], body["usage"]["completion_tokens"],
                    response.headers.get("X-Sluice-Model-Version"))
        response = await client.post(f"{self.url}/invocations", json={
            "inputs": [prompt], "params": {"max_new_tokens": self.max_tokens, "do_sample": False,
                                           "return_full_text": False}})
        response.raise_for_status()
        return response.json()["predictions"][0], None, None

    async def call(self, client: Any, prompt: str) -> tuple[int, str | None]:
        """One request: generated tokens and the model version header (sluice only)."""
        text, tokens, version = await self.answer(client, prompt)
        if tokens is None:
            tokens = self.tokens_of.get(text.strip(), self.max_tokens)
        return tokens, version


async def compare_answers(sluice: Target, mlflow: Target, texts: list[str]) -> dict[str, Any]:
    """Both servers' greedy answers to every prompt: equal answers mean equal work. Fills the
    token counts MLflow's answers are counted with."""
    import httpx

    async with httpx.AsyncClient(timeout=600) as client:
        ours = [await sluice.answer(client, t) for t in texts]
        theirs = [await mlflow.answer(client, t) for t in texts]
    for text, tokens, _ in ours:
        mlflow.tokens_of[text.strip()] = int(tokens or 0)
    # the pipeline cuts the prompt off by characters, so a space may move between prompt and answer
    same = sum(a[0].strip() == b[0].strip() for a, b in zip(ours, theirs, strict=True))
    return {"prompts": len(texts), "identical_answers": same,
            "example": {"sluice": ours[0][0][:200], "mlflow": theirs[0][0][:200]}}


async def run_load(target: Target, texts: list[str], concurrency: int, requests: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    tokens: list[int] = []
    failures: list[str] = []
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for index in counter:
            started = time.perf_counter()
            try:
                generated, _ = await target.call(client, texts[index % len(texts)])
            except Exception as error:  # counted, not raised: a failure is a result
                failures.append(repr(error)[:300])
                continue
            latencies.append(time.perf_counter() - started)
            tokens.append(generated)

    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")

    return {"server": target.name, "concurrency": concurrency, "requests": requests, "ok": len(latencies),
            "failures": len(failures), "failure_examples": failures[:3], "wall_s": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 3), "tokens_per_s": round(sum(tokens) / wall, 2),
            "mean_tokens": round(statistics.fmean(tokens), 2) if tokens else 0.0,
            "p50_ms": round(1000 * percentile(0.5), 1), "p99_ms": round(1000 * percentile(0.99), 1)}


async def hot_swap(target: Target, texts: list[str], tracking_uri: str, concurrency: int,
                   before_s: float, after_s: float) -> dict[str, Any]:
    """Load at ``concurrency`` while @champion moves 1 → 2 and /admin/reload is called."""
    import httpx
    from mlflow import MlflowClient

    results: list[dict[str, Any]] = []
    failures: list[str] = []
    done = asyncio.Event()

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        index = offset
        while not done.is_set():
            started = time.perf_counter()
            try:
                generated, version = await target.call(client, texts[index % len(texts)])
            except Exception as error:
                failures.append(repr(error)[:300])
                continue
            finally:
                index += concurrency
            results.append({"started": started, "ended": time.perf_counter(), "version": version,
                            "tokens": generated})

    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        began = time.perf_counter()
        workers = [asyncio.create_task(worker(client, i)) for i in range(concurrency)]
        await asyncio.sleep(before_s)
        await asyncio.to_thread(MlflowClient(tracking_uri).set_registered_model_alias, MODEL_NAME, "champion", "2")
        reload_started = time.perf_counter()
        answer = await client.post(f"{target.url}/admin/reload", timeout=600)
        reload_ended = time.perf_counter()
        await asyncio.sleep(after_s)
        done.set()
        await asyncio.gather(*workers)
        wall = time.perf_counter() - began
    during = [r for r in results if r["started"] < reload_ended and r["ended"] > reload_started]
    return {
        "concurrency": concurrency, "requests": len(results) + len(failures), "failures": len(failures),
        "failure_examples": failures[:3], "reload_status": answer.status_code, "reload_answer": answer.json(),
        "reload_s": round(reload_ended - reload_started, 3), "in_flight_during_reload": len(during),
        "versions_of_requests_during_reload": sorted({str(r["version"]) for r in during}),
        "versions_finished_before_reload": sorted({str(r["version"]) for r in results
                                                  if r["ended"] < reload_started}),
        "versions_started_after_reload": sorted({str(r["version"]) for r in results if r["started"] > reload_ended}),
        "requests_per_s": round(len(results) / wall, 3), "wall_s": round(wall, 2)}


# ------------------------------------------------------------------ report


def print_table(report: dict[str, Any]) -> None:
    say(f"\nmax_tokens {report['max_tokens']}, greedy; sluice serve max_batch_size {report['max_batch_size']}; "
        f"mlflow models serve: 1 worker (default)")
    say("| concurrency | server | requests | req/s | gen tokens/s | mean tokens | p50 ms | p99 ms | failures |")
    say("|---|---|---|---|---|---|---|---|---|")
    for row in report["load"]:
        say(f"| {row['concurrency']} | {row['server']} | {row['ok']} | {row['requests_per_s']:.2f} | "
            f"{row['tokens_per_s']:.1f} | {row['mean_tokens']:.1f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | "
            f"{row['failures']} |")
    say("\n| concurrency | sluice / mlflow: req/s | tokens/s | p50 latency (lower is better) |")
    say("|---|---|---|---|")
    for level, ratio in report["ratios"].items():
        say(f"| {level} | {ratio['requests_per_s']:.2f}x | {ratio['tokens_per_s']:.2f}x | {ratio['p50']:.2f}x |")
    swap = report["hot_swap"]
    say(f"\nhot swap at concurrency {swap['concurrency']}: {swap['requests']} requests, {swap['failures']} failed; "
        f"reload {swap['reload_s']:.2f} s (status {swap['reload_status']}, now version "
        f"{swap['reload_answer'].get('version')}); {swap['in_flight_during_reload']} requests in flight during it, "
        f"answered by version(s) {swap['versions_of_requests_during_reload']}; finished before: "
        f"{swap['versions_finished_before_reload']}, started after: {swap['versions_started_after_reload']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per level")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--max-batch-size", type=int, default=8, help="serving.max_batch_size for sluice serve")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny", help="what the versions hold")
    parser.add_argument("--model-dir", type=Path, help="serve this Hugging Face folder (both versions)")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    requests = QUICK_REQUESTS if args.quick else FULL_REQUESTS
    report: dict[str, Any] = {
        "benchmark": "serving_throughput", "quick": args.quick, "max_tokens": args.max_tokens,
        "max_batch_size": args.max_batch_size, "load_average_at_start": os.getloadavg(),
        "model": str(args.model_dir) if args.model_dir else args.model,
        "machine": machine(["torch", "transformers", "mlflow", "fastapi", "uvicorn"])}
    with tempfile.TemporaryDirectory(prefix="sluice-serving-bench-") as tmp:
        work = Path(tmp)
        say("building the models and registering them ...")
        folders = build_models(work, args.model, args.model_dir)
        store = work / "mlflow"
        (store / "artifacts").mkdir(parents=True)
        tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
        runs = register(tracking_uri, (store / "artifacts").as_uri(), folders)
        mlflow_model = log_mlflow_transformers_model(tracking_uri, runs["1"], folders["1"], work, args.max_tokens)
        texts = prompts(folders["1"])
        # the child servers find the temporary store the standard way
        # OMP_WAIT_POLICY=PASSIVE for both: sluice serve sets it by default (spinning OpenMP threads
        # take the CPU from the event loop); MLflow gets the same, so batching is what is compared
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE",
               # mlflow models serve execs `uvicorn` from PATH
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("SLUICE_SERVING_API_KEYS", None)
        say("starting sluice serve and mlflow models serve ...")
        launched = time.perf_counter()
        sluice, sluice_url = start_sluice(work, env, args.max_batch_size)
        mlflow_launched = time.perf_counter()
        mlflow_server, mlflow_url = start_mlflow(work, env, mlflow_model)
        try:  # both start at once on the same cores: an upper bound for each
            report["ready_after_launch_s"] = {
                "sluice": round(wait_ready(sluice_url, "/health", sluice, work / "sluice-serve.log", launched), 2),
                "mlflow": round(wait_ready(mlflow_url, "/ping", mlflow_server, work / "mlflow-serve.log",
                                           mlflow_launched), 2)}
            targets = [Target("sluice", sluice_url, args.max_tokens), Target("mlflow", mlflow_url, args.max_tokens)]
            for target in targets:
                asyncio.run(run_load(target, texts, 1, WARMUP_REQUESTS))
            report["same_answers"] = asyncio.run(compare_answers(*targets, texts))
            say(f"greedy answers identical on {report['same_answers']['identical_answers']} of "
                f"{len(texts)} prompts")
            report["load"] = []
            for level in CONCURRENCY:
                for target in targets:
                    say(f"{target.name}: concurrency {level}, {requests[level]} requests ...")
                    report["load"].append(asyncio.run(run_load(target, texts, level, requests[level])))
            report["peak_rss_mb"] = {"sluice": peak_rss_mb(sluice.pid), "mlflow": peak_rss_mb(mlflow_server.pid)}
            stop(mlflow_server)  # the hot swap runs on sluice alone
            say("hot swap under load ...")
            report["hot_swap"] = asyncio.run(hot_swap(targets[0], texts, tracking_uri, 8,
                                                      before_s=3 if args.quick else 5,
                                                      after_s=3 if args.quick else 5))
        finally:
            stop(sluice)
            stop(mlflow_server)
    by = {(r["server"], r["concurrency"]): r for r in report["load"]}
    report["ratios"] = {level: {
        "requests_per_s": by[("sluice", level)]["requests_per_s"] / by[("mlflow", level)]["requests_per_s"],
        "tokens_per_s": by[("sluice", level)]["tokens_per_s"] / by[("mlflow", level)]["tokens_per_s"],
        "p50": by[("sluice", level)]["p50_ms"] / by[("mlflow", level)]["p50_ms"]} for level in CONCURRENCY}
    print_table(report)
    text = json.dumps(report, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
