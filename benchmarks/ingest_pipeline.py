"""Ingest throughput: read → clean → validate → commit of synthetic sft rows.

For each size (100k and 1M rows by default) a fresh subprocess of this script
runs the real ``ingest`` flow (Prefect, ephemeral API) on a JSONL file of
simple synthetic sft rows, against a fresh embedded lakeFS-compatible server
on loopback, after a small warm-up flow run that pays the imports and
first-call costs (reported apart, as is Prefect's API start).

Reported: the flow's wall time end to end and rows/s; a stage breakdown from
the flow's own records — each task run's duration from the Prefect API, and
the cleaning stages' seconds from the batch manifest the flow commits; peak
RSS of the pipeline process (``ru_maxrss``) and of the lakeFS server.

Compared side by side in the same process, as a ratio (the machine is
noisy): the floor, ``pyarrow.json.read_json`` of the whole file plus
``pq.write_table`` — a bare parse and write with no cleaning, validation or
lakeFS.

Run:

    .venv/bin/python benchmarks/ingest_pipeline.py              # 100k and 1M rows (a few minutes)
    .venv/bin/python benchmarks/ingest_pipeline.py --quick      # 20k rows, smoke test
    .venv/bin/python benchmarks/ingest_pipeline.py --json out.json
    .venv/bin/python benchmarks/ingest_pipeline.py --rows 1000000 --profile   # cProfile of the flow run

GB here means 10**9 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `flows`, `tasks` and `sluice` live at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks._common import BENCH_KEY as KEY, BENCH_SECRET as SECRET  # noqa: E402
GB = 1e9
FULL_SIZES = [100_000, 1_000_000]
QUICK_SIZES = [20_000]
WARMUP_ROWS = 2_000
SEED = 20261121

TARGET_ROWS_PER_S = 100_000
TARGET_PEAK_RSS_GB = 3.0
TARGET_RSS_ROWS = 1_000_000

# Task runs of the flow, grouped into stages (in flow order). The raw upload
# runs concurrently with prepare-batch, so stages add up to more than the wall time.
STAGES = [
    ("setup", "setup: contract, repository, branch", ("load-contract", "find-source-files", "ensure-repository",
                                                      "resolve-commit", "create-branch")),
    ("upload_raw", "upload raw input (concurrent)", ()),
    ("prepare", "prepare batch (read, clean, dedup)", ("prepare-batch",)),
    ("write", "lakeFS: clean rows + manifest, commit", ()),
    ("validate", "validate (GX) + reports + Data Docs", ("validate-batch",)),
    ("publish", "lakeFS: reports, commit, merge", ()),
]
CLEANING_STAGES = ("read", "clean", "minhash", "deduplicate", "write")


# ------------------------------------------------------------------ synthetic data (not timed)

_COMMON = ("the a an of to in and or for with on at by from is are was be can will should how what why "
           "when which your my our their this that these those it not no more most less very much many "
           "some any each every other new old good best first last data model user team file table "
           "order account report system service request error value time day week month year").split()
_ONSETS = "b c d f g h j k l m n p r s t v w z br cl dr fl gr pl pr sh st th tr ch".split()
_VOWELS = "a e i o u ai ea io ou".split()
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck"]
_OPENERS = ["How do I", "What is the best way to", "Can you explain how to", "Why does", "When should I",
            "Is it possible to", "Please describe how to", "What happens if I", "Could you help me"]
_DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.io"]


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    """Common English words plus pseudo-words (1–3 syllables), no repeats."""
    words = dict.fromkeys(_COMMON)
    while len(words) < size:
        syllables = rng.choice((1, 2, 2, 3))
        words.setdefault("".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                                 for _ in range(syllables)))
    return list(words)


def synthetic_rows(count: int, seed: int):  # type: ignore[no-untyped-def]
    """``count`` simple sft rows (dicts), deterministic for a seed: a prompt of
    6–12 words, a response of 9–20 words (~100–200 characters together), with
    Zipf-like word frequencies; ~1% carry an e-mail address or a phone number,
    ~0.5% repeat an earlier row exactly."""
    import numpy as np

    rng = random.Random(seed)
    words = vocabulary(rng)
    weights = 1.0 / np.arange(1, len(words) + 1) ** 0.8
    weights /= weights.sum()
    draw = np.random.default_rng(seed)
    recent: list[dict[str, str]] = []
    block = 50_000
    for first in range(0, count, block):
        n = min(block, count - first)
        prompt_len = draw.integers(6, 13, n)
        response_len = draw.integers(9, 21, n)
        picks = draw.choice(len(words), size=int(prompt_len.sum() + response_len.sum()), p=weights).tolist()
        extra = draw.random(n)
        position = 0
        for i in range(n):
            if extra[i] < 0.005 and recent:  # an exact duplicate of a recent row
                yield dict(rng.choice(recent))
                position += int(prompt_len[i] + response_len[i])
                continue
            p_words = [words[k] for k in picks[position:position + prompt_len[i]]]
            position += int(prompt_len[i])
            r_words = [words[k] for k in picks[position:position + response_len[i]]]
            position += int(response_len[i])
            prompt = f"{_OPENERS[(first + i) % len(_OPENERS)]} {' '.join(p_words)}?"
            cut = len(r_words) // 2
            response = (f"{r_words[0].capitalize()} {' '.join(r_words[1:cut])}. "
                        f"{r_words[cut].capitalize()} {' '.join(r_words[cut + 1:])}.")
            if extra[i] > 0.995:  # ~0.5%: an e-mail address
                prompt += f" Write to me at {rng.choice(words)}.{rng.choice(words)}{rng.randrange(100)}@" \
                          f"{rng.choice(_DOMAINS)}."
            elif extra[i] > 0.99:  # ~0.5%: a phone number
                response += f" Call +1 {rng.randrange(201, 989)} 555 {rng.randrange(1000, 9999)}."
            row = {"prompt": prompt, "response": response, "source": "demo"}
            recent.append(row)
            if len(recent) > 1000:
                del recent[:500]
            yield row


def write_jsonl(path: Path, count: int, seed: int) -> dict:
    import orjson

    started = time.perf_counter()
    with path.open("wb") as handle:
        buffer = []
        for row in synthetic_rows(count, seed):
            buffer.append(orjson.dumps(row))
            if len(buffer) >= 10_000:
                handle.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            handle.write(b"\n".join(buffer) + b"\n")
    return {"rows": count, "bytes": path.stat().st_size, "seconds": time.perf_counter() - started}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # ru_maxrss: KiB on Linux


def process_peak_rss_gb(pid: int) -> float | None:
    """Peak RSS (VmHWM) of another process, where /proc has it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GB
    except OSError:
        return None
    return None


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# ------------------------------------------------------------------ one size (child process)


def run_flow(source: Path, repository: str, work: Path) -> tuple[object, float]:
    """The real ingest flow on ``source``; its final state and wall seconds."""
    from flows.ingest import ingest
    from sluice.core.config import ContractsConfig, DataConfig, LakeFSConfig, SluiceConfig

    config = SluiceConfig(
        lakefs=LakeFSConfig(repository=repository, storage_namespace=f"local://{repository}"),
        data=DataConfig(work_dir=work),
        contracts=ContractsConfig(directory=ROOT / "data_contracts", data_docs=True),
    )
    started = time.perf_counter()
    state = ingest(str(source), "sft", config=config, return_state=True)
    return state, time.perf_counter() - started


def task_seconds(flow_run_id: str) -> list[tuple[str, float]]:
    """(task name, seconds) of every task run of a flow run, in start order."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list:
        async with get_client() as client:
            return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))

    runs = sorted(asyncio.run(read()), key=lambda r: r.start_time)
    return [(r.name.rsplit("-", 1)[0], r.total_run_time.total_seconds()) for r in runs]


def stage_seconds(tasks: list[tuple[str, float]]) -> dict[str, float]:
    """Group task runs into the STAGES above. Uploads and commits are told
    apart by their order in the flow: raw upload, then write, then publish."""
    stages = {key: 0.0 for key, _, _ in STAGES}
    by_name = {name: key for key, _, names in STAGES for name in names}
    uploads = 0
    phase = "write"
    for name, seconds in tasks:
        if name in by_name:
            stages[by_name[name]] += seconds
            if name == "validate-batch":
                phase = "publish"
        elif name == "upload-files":
            uploads += 1
            stages["upload_raw" if uploads == 1 else phase] += seconds
        elif name in ("commit-branch", "merge-branch", "delete-branch"):
            stages[phase] += seconds
    return stages


def read_manifest(repository: str, result) -> dict:  # type: ignore[no-untyped-def]
    import lakefs

    client = lakefs.Client(host=os.environ["LAKECTL_SERVER_ENDPOINT_URL"], username=KEY, password=SECRET)
    path = f"datasets/sft/manifests/{result.batch_id}.json"
    return json.loads(lakefs.Repository(repository, client=client).ref(result.main_commit.commit_id)
                      .object(path).reader(mode="rb").read())


def floor_run(source: Path, target: Path) -> float:
    """Bare parse + write: the whole JSONL through pyarrow, straight to Parquet."""
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    started = time.perf_counter()
    table = pajson.read_json(source)
    pq.write_table(table, target)
    spent = time.perf_counter() - started
    if table.num_rows == 0:
        raise RuntimeError("the floor read no rows")
    target.unlink()
    return spent


def child(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-child-", dir=args.tmp))
    os.environ.update({"PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "PREFECT_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"})
    for key in ("PREFECT_API_URL", "SLUICE_ENV"):
        os.environ.pop(key, None)
    from prefect import flow

    from sluice.shell.local_lakefs import EmbeddedLakeFS

    @flow(name="bench-start-prefect")
    def start_prefect() -> int:
        return 1

    out: dict = {"rows": args.rows, "input_bytes": args.input.stat().st_size}
    started = time.perf_counter()
    start_prefect()  # Prefect's ephemeral API (a subprocess) starts here, not in the measured run
    out["prefect_start_s"] = time.perf_counter() - started
    server = EmbeddedLakeFS(tmp / "lakefs", port=0, credentials=(KEY, SECRET))
    endpoint = server.start()
    os.environ.update({"LAKECTL_SERVER_ENDPOINT_URL": endpoint.url, "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": KEY,
                       "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": SECRET})
    try:
        warm_state, out["warmup_s"] = run_flow(args.warmup, "warm-up", tmp / "work")
        warm_state.result()  # raises if the warm-up failed
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        state, out["flow_s"] = run_flow(args.input, "bench", tmp / "work")
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(40)
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        result = state.result()
        out["peak_rss_gb"] = peak_rss_gb()
        # the largest finished child: an ingest worker (lakeFS and Prefect's API still run)
        out["worker_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / GB

        out["server_peak_rss_gb"] = process_peak_rss_gb(server.process.pid) if server.process else None
        out["tasks"] = task_seconds(str(state.state_details.flow_run_id))
        out["stages"] = stage_seconds(out["tasks"])
        manifest = read_manifest("bench", result)
        out["cleaning"] = manifest["cleaning"]
        out["workers"] = manifest["cleaning"].get("workers", 1)
        out["validation"] = manifest["validation"]
        out["decision"] = result.decision
        out["rows_published"] = result.rows_published
    finally:
        server.stop()
    floors = [floor_run(args.input, tmp / "floor.parquet") for _ in range(2)]
    out["floor_runs_s"], out["floor_s"] = floors, min(floors)
    args.result.write_text(json.dumps(out, default=str))


# ------------------------------------------------------------------ parent: sizes, report


def machine() -> dict:
    from benchmarks._common import machine as describe_machine

    return describe_machine(("pyarrow", "great-expectations", "prefect", "lakefs-sdk", "pandas"))


def total_rss(run: dict) -> float:
    """Upper bound on memory in use at once: the pipeline process plus every
    worker at the largest worker's peak."""
    workers = run["workers"] if run["workers"] > 1 else 0
    return run["peak_rss_gb"] + workers * run["worker_peak_rss_gb"]


def fmt_rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 else "-"


def print_report(results: dict) -> None:
    m = results["machine"]
    print(f"\nMachine: {m['cpu_count']} CPUs, {m['memory_gb']:.0f} GB, {m['platform']}, Python {m['python']}; "
          + ", ".join(f"{k} {v}" for k, v in m["packages"].items()))
    runs = results["runs"]
    labels = [f"{r['rows']:,} rows: s" for r in runs]
    head = f"{'stage':40}" + "".join(f"{label:>20}{'rows/s':>12}" for label in labels)
    print("\n" + head)
    print("-" * len(head))
    for key, label, _ in STAGES:
        print(f"{label:40}" + "".join(f"{r['stages'][key]:20.2f}{fmt_rate(r['rows'], r['stages'][key]):>12}"
                                      for r in runs))
        if key == "prepare":
            for stage in CLEANING_STAGES:
                print(f"{'  ' + stage:40}" + "".join(
                    f"{r['cleaning']['seconds'].get(stage, 0.0):20.2f}"
                    f"{fmt_rate(r['rows'], r['cleaning']['seconds'].get(stage, 0.0)):>12}" for r in runs))
    print("-" * len(head))
    print(f"{'END TO END (the ingest flow, wall)':40}" + "".join(
        f"{r['flow_s']:20.2f}{fmt_rate(r['rows'], r['flow_s']):>12}" for r in runs))
    print(f"{'floor: read_json + write_table':40}" + "".join(
        f"{r['floor_s']:20.2f}{fmt_rate(r['rows'], r['floor_s']):>12}" for r in runs))
    print(f"{'end to end / floor':40}" + "".join(f"{ratio(r['flow_s'], r['floor_s']):19.1f}x{'':12}" for r in runs))
    print(f"{'peak RSS, pipeline process (GB)':40}" + "".join(f"{r['peak_rss_gb']:20.2f}{'':12}" for r in runs))
    print(f"{'cleaning worker processes':40}" + "".join(f"{r['workers']:20d}{'':12}" for r in runs))
    print(f"{'peak RSS, largest worker (GB)':40}" + "".join(
        f"{r['worker_peak_rss_gb'] if r['workers'] > 1 else 0.0:20.2f}{'':12}" for r in runs))
    print(f"{'peak RSS, pipeline + all workers (GB)':40}" + "".join(
        f"{total_rss(r):20.2f}{'':12}" for r in runs))
    print(f"{'peak RSS, lakeFS server (GB)':40}" + "".join(
        f"{r['server_peak_rss_gb'] or float('nan'):20.2f}{'':12}" for r in runs))
    print(f"{'not measured: Prefect API start (s)':40}" + "".join(f"{r['prefect_start_s']:20.2f}{'':12}" for r in runs))
    print(f"{'not measured: warm-up flow, 2k rows (s)':40}" + "".join(f"{r['warmup_s']:20.2f}{'':12}" for r in runs))
    print("\nPer size:")
    for r in runs:
        c = r["cleaning"]
        print(f"  {r['rows']:>9,} rows, {r['input_bytes'] / 1e6:.0f} MB JSONL: {c['rows_out']:,} kept (dropped "
              f"{c['dropped'] or 'none'}), PII redacted {c['pii_redacted'] or 'none'}; decision {r['decision']}, "
              f"{r['rows_published']:,} published; floor runs {', '.join(f'{s:.2f}' for s in r['floor_runs_s'])} s")
    print("\nTargets (2 cores):")
    for r in runs:
        rate = r["rows"] / r["flow_s"]
        print(f"  >= {TARGET_ROWS_PER_S:,} rows/s end to end at {r['rows']:,} rows: {rate:,.0f} rows/s "
              f"[{'PASS' if rate >= TARGET_ROWS_PER_S else 'FAIL'}]")
    big = [r for r in runs if r["rows"] == TARGET_RSS_ROWS]
    if big:
        rss = total_rss(big[0])
        print(f"  <= {TARGET_PEAK_RSS_GB:.0f} GB peak RSS at {TARGET_RSS_ROWS:,} rows: {rss:.2f} GB "
              f"[{'PASS' if rss <= TARGET_PEAK_RSS_GB else 'FAIL'}]")


def parent(args: argparse.Namespace) -> None:
    sizes = args.rows or (QUICK_SIZES if args.quick else FULL_SIZES)
    results: dict = {"machine": machine(), "quick": args.quick, "sizes": sizes, "runs": []}
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as folder:
        tmp = Path(folder)
        warmup = tmp / "warmup.jsonl"
        write_jsonl(warmup, WARMUP_ROWS, SEED - 1)
        for rows in sizes:
            path = tmp / f"sft-{rows}.jsonl"
            print(f"generating {rows:,} rows ...", flush=True)
            write_jsonl(path, rows, SEED + rows)
            print(f"running the ingest flow on {rows:,} rows in a fresh process ...", flush=True)
            result_path = tmp / f"result-{rows}.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--child", "--rows", str(rows),
                       "--input", str(path), "--warmup", str(warmup), "--result", str(result_path), "--tmp", str(tmp)]
            if args.profile:
                command.append("--profile")
            subprocess.run(command, check=True)
            results["runs"].append(json.loads(result_path.read_text()))
            path.unlink()
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nJSON written to {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k rows only, for a smoke test")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write all figures as JSON here")
    parser.add_argument("--rows", type=int, action="append", help="run this size (repeatable) instead of the defaults")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each measured flow run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.rows = args.rows[0]
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
