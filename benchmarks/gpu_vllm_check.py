"""Backend vllm against real vLLM, on a GPU (the CPU tests use the built-in engine as the stand-in).

Registers three versions of the offline SmolLM2-135M-Instruct in a fresh MLflow store: 1 and 2 are
LoRA adapters over it, 3 is a full model (the base itself, as a merged folder). Starts
``sluice serve`` with ``serving.backend=vllm`` on @champion = 1, puts it under load, moves the
alias to 2 (LoRA move: load into every replica, switch, unload) and then to 3 (full move: new
engines beside the old, switch, drain, stop), and prints, as JSON: answers per version, failed
requests (must be 0), each move's time, and the front door's overhead against a replica directly
(throughput ratio and p50 latency, same load).

    python benchmarks/gpu_vllm_check.py [--replicas 2] [--clients 8] [--seconds 15] [--json out.json]
    python benchmarks/gpu_vllm_check.py --engine-command "python -m sluice.serving.engine_server" \
        --replicas 1 --clients 2 --seconds 5    # the same run on CPU, against the stand-in
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NAME = "gpu-vllm-check"
CHAT = [{"role": "user", "content": "Name three things a sluice gate is used for."}]


def lora_adapter(base: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
        r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def register_versions(work: Path) -> Path:
    """The MLflow store with versions 1, 2 (LoRA over SmolLM2) and 3 (full); @champion = 1."""
    from mlflow import MlflowClient

    from sluice.core.config import TrackingConfig
    from sluice.core.models.base_model import base_model_fingerprint
    from sluice.core.models.catalog import fetch_model
    from sluice.core.registry.tracking import ensure_experiment, tracking_target

    fetch_model("smollm2-135m-instruct", work / "models")
    base = work / "models" / "smollm2-135m-instruct"
    target = tracking_target(TrackingConfig(embedded_dir=work / "mlflow"))
    client = MlflowClient(target.tracking_uri)
    experiment = ensure_experiment(target, "gpu-vllm-check")
    client.create_registered_model(NAME)
    for seed in (1, 2, None):
        run = client.create_run(experiment)
        if seed is not None:
            params = {"training.finetune": "lora", "base_model": str(base),
                      "base_model.fingerprint": base_model_fingerprint(str(base))}
            for key, value in params.items():
                client.log_param(run.info.run_id, key, value)
            client.log_artifacts(run.info.run_id, str(lora_adapter(base, work / f"adapter-{seed}", seed)), "adapter")
        client.log_artifacts(run.info.run_id, str(base), "model")
        client.set_terminated(run.info.run_id)
        client.create_model_version(NAME, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(NAME, "champion", "1")
    return work / "mlflow"


class Load:
    """``clients`` threads sending chat requests (half streamed) to ``url`` until stopped."""

    def __init__(self, url: str, clients: int, model: str | None = None):
        self.url, self.model, self.lock, self.stop = url, model, threading.Lock(), threading.Event()
        self.ok: list[tuple[str | None, float, int]] = []  # (version header, latency, completion tokens)
        self.failed: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def run(self, index: int) -> None:
        body = {"messages": CHAT, "max_tokens": 64, "ignore_eos": True, "temperature": 0,
                **({"model": self.model} if self.model else {})}
        with httpx.Client(timeout=120) as client:
            turn = index
            while not self.stop.is_set():
                turn += 1
                started = time.perf_counter()
                try:
                    if turn % 2:
                        response = client.post(f"{self.url}/v1/chat/completions", json=body)
                        good = response.status_code == 200
                    else:
                        with client.stream("POST", f"{self.url}/v1/chat/completions",
                                           json={**body, "stream": True}) as response:
                            good = response.status_code == 200 and "data: [DONE]" in list(response.iter_lines())
                except httpx.HTTPError as error:
                    good, response = False, None
                    with self.lock:
                        self.failed.append(repr(error))
                    continue
                with self.lock:
                    if good:
                        self.ok.append((response.headers.get("X-Sluice-Model-Version"),
                                        time.perf_counter() - started, 64))
                    else:
                        self.failed.append(f"{response.status_code}")

    def summary(self, seconds: float) -> dict[str, float]:
        latencies = [latency for _, latency, _ in self.ok]
        return {"requests": len(self.ok), "failed": len(self.failed),
                "tokens_per_s": round(sum(t for *_, t in self.ok) / seconds, 1),
                "p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None}


def start_server(config_file: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "sluice", "serve", "--port", "0", "-c", str(config_file)],
                               stdout=subprocess.PIPE, text=True, cwd=config_file.parent)
    assert process.stdout is not None
    match = re.search(r"at (http://[\d.]+:\d+)/v1", process.stdout.readline())
    if not match:
        process.kill()
        raise SystemExit("sluice serve did not announce its URL")
    return process, match.group(1)


def wait_healthy(url: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/health", timeout=5)
            if health.status_code == 200:
                return health.json()
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"backend vllm not healthy after {timeout} s: {httpx.get(f'{url}/health').text}")


def move(url: str, store: Path, version: str) -> float:
    from mlflow import MlflowClient

    from sluice.core.config import TrackingConfig
    from sluice.core.registry.tracking import tracking_target

    MlflowClient(tracking_target(TrackingConfig(embedded_dir=store)).tracking_uri).set_registered_model_alias(
        NAME, "champion", version)
    started = time.perf_counter()
    response = httpx.post(f"{url}/admin/reload", timeout=900)
    assert response.status_code == 200 and response.json()["version"] == version, response.text
    return round(time.perf_counter() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--engine-command", default="vllm serve",
                        help="the engine (a CPU dry run of this script: 'python -m sluice.serving.engine_server')")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="gpu-vllm-check-"))
    store = register_versions(work)
    share = round(0.8 / (args.replicas + 1), 2)  # a full move runs the new engines beside the old
    config = {"tracking": {"embedded_dir": str(store)}, "registry": {"model_name": NAME},
              "serving": {"backend": "vllm", "vllm_replicas": args.replicas,
                          "vllm_command": args.engine_command.split(), "watch_seconds": 3600,
                          "state_dir": str(work / "serving"), "max_tokens_limit": 256,
                          "vllm_args": ["--gpu-memory-utilization", str(share), "--max-model-len", "2048"]}}
    (work / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    server, url = start_server(work / "config.yaml")
    result: dict = {"replicas": args.replicas, "clients": args.clients}
    try:
        engines = wait_healthy(url)["engines"]
        replica_url = next(iter(engines.values()))[0]["url"]
        with Load(url, args.clients) as load:
            time.sleep(args.seconds)
            result["lora_move_s"] = move(url, store, "2")
            time.sleep(args.seconds)
            result["full_move_s"] = move(url, store, "3")
            time.sleep(args.seconds)
        result["answers_by_version"] = {v: sum(1 for h, *_ in load.ok if h == v) for v in ("1", "2", "3")}
        result["failed"] = load.failed[:20]
        result["failed_count"] = len(load.failed)
        replica_url = next(iter(wait_healthy(url)["engines"].values()))[0]["url"]
        for label, target, model in (("front_door", url, None), ("replica_direct", replica_url, f"{NAME}-v3")):
            with Load(target, args.clients, model) as measured:
                time.sleep(args.seconds)
            result[label] = measured.summary(args.seconds)
        front, direct = result["front_door"], result["replica_direct"]
        result["proxy_throughput_ratio"] = round(front["tokens_per_s"] / max(direct["tokens_per_s"], 1e-9), 3)
        result["proxy_p50_overhead_ms"] = round(front["p50_ms"] - direct["p50_ms"], 2)
    finally:
        server.terminate()
        server.wait(120)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if result.get("failed_count"):
        raise SystemExit(f"{result['failed_count']} request(s) failed during the alias moves")


if __name__ == "__main__":
    main()
