"""SDK round trips against the embedded lakeFS-compatible server.

Measures, through the official ``lakefs`` SDK, against a fresh embedded server
on loopback:

1. upload of 1,000 small (1 KB) objects, then one commit;
2. listing 10,000 committed objects with ``ref.objects()``;
3. reading a 100 MB object whole with ``obj.reader().read()``;
4. median and p95 latency of single SDK calls (200 repeats each).

Every figure comes with a baseline measured in the same run, reported as a
ratio, because the machine is noisy: raw ``urllib3`` requests to the same
server (server cost without the SDK), the same work on the local file system
(the floor), and a raw keep-alive ``GET /api/v1/healthcheck`` (the bare HTTP
round trip) for the per-call latencies.

Run:

    .venv/bin/python benchmarks/lakefs_sdk_roundtrips.py            # full sizes
    .venv/bin/python benchmarks/lakefs_sdk_roundtrips.py --quick    # smoke test, seconds
    .venv/bin/python benchmarks/lakefs_sdk_roundtrips.py --json out.json

MB here means 10**6 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlencode

import lakefs
import urllib3

from sluice.shell.local_lakefs import EmbeddedLakeFS

KEY, SECRET = "AKIABENCH", "bench-secret"
MB = 1_000_000
SMALL_SIZE = 1024

FULL = {"small_objects": 1000, "listed": 10_000, "big_mb": 100, "big_repeats": 7,
        "list_repeats": 3, "latency_repeats": 200}
QUICK = {"small_objects": 100, "listed": 1000, "big_mb": 10, "big_repeats": 3,
         "list_repeats": 2, "latency_repeats": 30}

TARGET_MEDIAN_CALL_MS = 5.0
TARGET_READ_MB_S = 200.0


# ------------------------------------------------------------------ small helpers


def elapsed(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


class RawHTTP:
    """Plain urllib3 requests to the server's API, with basic auth and keep-alive."""

    def __init__(self, url: str):
        self.api = url.rstrip("/") + "/api/v1"
        self.pool = urllib3.PoolManager(maxsize=4)
        self.auth = urllib3.make_headers(basic_auth=f"{KEY}:{SECRET}")

    def request(self, method: str, path: str, fields: dict | None = None, body: bytes | None = None,
                headers: dict | None = None) -> urllib3.BaseHTTPResponse:
        url = self.api + path
        if fields:
            url += "?" + urlencode(fields)
        response = self.pool.request(method, url, body=body, headers={**self.auth, **(headers or {})})
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} -> {response.status}: {response.data[:200]!r}")
        return response

    def upload(self, repo: str, branch: str, path: str, data: bytes) -> None:
        self.request("POST", f"/repositories/{repo}/branches/{branch}/objects", {"path": path}, data,
                     {"Content-Type": "application/octet-stream"})

    def commit(self, repo: str, branch: str, message: str) -> None:
        self.request("POST", f"/repositories/{repo}/branches/{branch}/commits",
                     body=json.dumps({"message": message}).encode(), headers={"Content-Type": "application/json"})

    def read(self, repo: str, ref: str, path: str) -> bytes:
        return self.request("GET", f"/repositories/{repo}/refs/{ref}/objects", {"path": path}).data

    def list_all(self, repo: str, ref: str, amount: int) -> int:
        count, after = 0, ""
        while True:
            page = json.loads(self.request("GET", f"/repositories/{repo}/refs/{ref}/objects/ls",
                                           {"amount": amount, "after": after}).data)
            count += len(page["results"])
            if not page["pagination"]["has_more"]:
                return count
            after = page["pagination"]["next_offset"]

    def healthcheck(self) -> None:
        self.request("GET", "/healthcheck")


def new_repository(client: lakefs.Client, name: str) -> lakefs.Repository:
    return lakefs.Repository(name, client=client).create(storage_namespace=f"local://{name}")


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": sys.version.split()[0], "lakefs_sdk": lakefs_sdk_version()}


def lakefs_sdk_version() -> str:
    return f"lakefs {version('lakefs')}, lakefs-sdk {version('lakefs-sdk')}"


# ------------------------------------------------------------------ 1. upload + commit


def bench_upload(client: lakefs.Client, raw: RawHTTP, tmp: Path, count: int) -> dict:
    payloads = [os.urandom(SMALL_SIZE) for _ in range(count)]  # distinct: no blob de-duplication
    names = [f"small/{i:05d}.bin" for i in range(count)]
    branch = new_repository(client, "upload-sdk").branch("main")
    new_repository(client, "upload-raw")
    folder = tmp / "local-upload"
    folder.mkdir()

    def sdk_upload(chunk: range) -> None:
        for i in chunk:
            branch.object(names[i]).upload(data=payloads[i], mode="wb")

    def raw_upload(chunk: range) -> None:
        for i in chunk:
            raw.upload("upload-raw", "main", names[i], payloads[i])

    def local_write(chunk: range) -> None:
        for i in chunk:
            (folder / names[i].replace("/", "-")).write_bytes(payloads[i])

    # Ten chunks, the three variants taking turns, so that the disk's and the
    # machine's slow moments fall on all of them alike.
    sdk_s = raw_s = local_s = 0.0
    step = max(1, count // 10)
    for first in range(0, count, step):
        chunk = range(first, min(first + step, count))
        sdk_s += elapsed(lambda: sdk_upload(chunk))
        raw_s += elapsed(lambda: raw_upload(chunk))
        local_s += elapsed(lambda: local_write(chunk))
    sdk_commit_s = elapsed(lambda: branch.commit(message="sdk upload"))
    raw_commit_s = elapsed(lambda: raw.commit("upload-raw", "main", "raw upload"))
    sdk_total = sdk_s + sdk_commit_s
    raw_total = raw_s + raw_commit_s
    return {
        "objects": count, "object_bytes": SMALL_SIZE,
        "sdk_upload_s": sdk_s, "sdk_commit_s": sdk_commit_s, "sdk_total_s": sdk_total,
        "sdk_objects_per_s": count / sdk_total,
        "raw_upload_s": raw_s, "raw_commit_s": raw_commit_s, "raw_total_s": raw_total,
        "raw_objects_per_s": count / raw_total,
        "local_write_s": local_s, "local_objects_per_s": count / local_s,
        "ratio_sdk_to_raw": ratio(sdk_total, raw_total),
        "ratio_sdk_to_local": ratio(sdk_total, local_s),
        "ratio_commit_sdk_to_raw": ratio(sdk_commit_s, raw_commit_s),
    }


# ------------------------------------------------------------------ 2. listing


def bench_list(client: lakefs.Client, raw: RawHTTP, tmp: Path, count: int, repeats: int) -> dict:
    # Setup (not timed): `count` committed objects, and as many local files.
    new_repository(client, "listing")
    setup_start = time.perf_counter()
    for i in range(count):
        raw.upload("listing", "main", f"data/{i:06d}.bin", b"%d" % i)
    raw.commit("listing", "main", "objects to list")
    setup_s = time.perf_counter() - setup_start
    folder = tmp / "local-list"
    folder.mkdir()
    for i in range(count):
        (folder / f"{i:06d}.bin").write_bytes(b"%d" % i)

    branch = lakefs.Repository("listing", client=client).branch("main")
    runs: dict[str, list[float]] = {"sdk": [], "sdk_amount_1000": [], "raw_amount_1000": [],
                                    "raw_amount_100": [], "local_scandir": []}
    checks = {
        "sdk": lambda: sum(1 for _ in branch.objects()),
        "sdk_amount_1000": lambda: sum(1 for _ in branch.objects(amount=1000)),
        "raw_amount_1000": lambda: raw.list_all("listing", "main", 1000),
        "raw_amount_100": lambda: raw.list_all("listing", "main", 100),
        "local_scandir": lambda: sum(1 for entry in os.scandir(folder) if entry.is_file()),
    }
    for _ in range(repeats):  # round robin, so noise hits every variant alike
        for name, fn in checks.items():
            start = time.perf_counter()
            seen = fn()
            runs[name].append(time.perf_counter() - start)
            if seen != count:
                raise RuntimeError(f"{name} listed {seen} objects, expected {count}")

    result: dict = {"objects": count, "repeats": repeats, "setup_s": setup_s}
    for name, samples in runs.items():
        result[f"{name}_median_s"] = statistics.median(samples)
        result[f"{name}_best_s"] = min(samples)
        result[f"{name}_objects_per_s"] = count / statistics.median(samples)
    sdk = result["sdk_median_s"]
    result["ratio_sdk_to_raw_1000"] = ratio(sdk, result["raw_amount_1000_median_s"])
    result["ratio_sdk_to_raw_100"] = ratio(sdk, result["raw_amount_100_median_s"])
    result["ratio_sdk_to_local"] = ratio(sdk, result["local_scandir_median_s"])
    return result


# ------------------------------------------------------------------ 3. big read


def bench_big_read(client: lakefs.Client, raw: RawHTTP, tmp: Path, size_mb: int, repeats: int) -> dict:
    data = os.urandom(size_mb * MB)
    local = tmp / "big.bin"
    local.write_bytes(data)
    branch = new_repository(client, "big").branch("main")
    branch.object("big.bin").upload(data=data, mode="wb")
    branch.commit(message="big object")

    readers = {
        "sdk": lambda: lakefs.Repository("big", client=client).branch("main").object("big.bin").reader().read(),
        "raw": lambda: raw.read("big", "main", "big.bin"),
        "local": local.read_bytes,
    }
    runs: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(repeats):
        for name, fn in readers.items():
            start = time.perf_counter()
            got = fn()
            runs[name].append(time.perf_counter() - start)
            if len(got) != len(data):
                raise RuntimeError(f"{name} read {len(got)} bytes, expected {len(data)}")
            del got

    result: dict = {"size_mb": size_mb, "repeats": repeats}
    for name, samples in runs.items():
        result[f"{name}_best_mb_s"] = size_mb / min(samples)
        result[f"{name}_median_mb_s"] = size_mb / statistics.median(samples)
    result["ratio_sdk_to_raw"] = ratio(result["sdk_median_mb_s"], result["raw_median_mb_s"])
    result["ratio_sdk_to_local"] = ratio(result["sdk_median_mb_s"], result["local_median_mb_s"])
    return result


# ------------------------------------------------------------------ 4. single-call latency


def latency_calls(client: lakefs.Client, raw: RawHTTP, repeats: int) -> list[tuple[str, object, object]]:
    """(name, SDK call, raw urllib3 call of the same main request). SDK objects are
    made fresh inside each call where the SDK would otherwise cache the answer."""
    repo = "latency"
    branch = lakefs.Repository(repo, client=client).branch("main")
    path = "obj/00000.bin"
    uploads = iter([os.urandom(SMALL_SIZE) for _ in range(2 * repeats + 10)])  # fresh bytes per upload
    base = f"/repositories/{repo}"
    return [
        ("repo.properties", lambda: lakefs.Repository(repo, client=client).properties,
         lambda: raw.request("GET", base)),
        ("branch.head", lambda: branch.head,
         lambda: raw.request("GET", f"{base}/branches/main")),
        ("obj.stat()", lambda: branch.object(path).stat(),
         lambda: raw.request("GET", f"{base}/refs/main/objects/stat", {"path": path})),
        ("obj.exists() (HEAD)", lambda: branch.object(path).exists(),
         lambda: raw.request("HEAD", f"{base}/refs/main/objects", {"path": path})),
        ("upload 1 KB", lambda: branch.object("upload/sdk.bin").upload(data=next(uploads), mode="wb"),
         lambda: raw.upload(repo, "main", "upload/raw.bin", next(uploads))),
        ("read 1 KB", lambda: branch.object(path).reader().read(),
         lambda: raw.read(repo, "main", path)),
        ("branch.get_commit()", lambda: branch.get_commit(),
         lambda: raw.request("GET", f"{base}/commits/main")),
        ("list one page (100)", lambda: list(branch.objects(max_amount=100)),
         lambda: raw.request("GET", f"{base}/refs/main/objects/ls", {"prefix": "obj/"})),
    ]


def count_requests(client: lakefs.Client, fn) -> int:
    """How many HTTP requests one SDK call sends (counted on the SDK's pool)."""
    pool = client.sdk_client.objects_api.api_client.rest_client.pool_manager
    original = pool.request
    sent = 0

    def counting(*args, **kwargs):
        nonlocal sent
        sent += 1
        return original(*args, **kwargs)

    pool.request = counting
    try:
        fn()
    finally:
        del pool.request  # back to the class's method
    return sent


def bench_latency(client: lakefs.Client, raw: RawHTTP, repeats: int) -> dict:
    branch = new_repository(client, "latency").branch("main")
    for i in range(100):
        branch.object(f"obj/{i:05d}.bin").upload(data=os.urandom(SMALL_SIZE), mode="wb")
    branch.commit(message="objects for latency")

    calls = latency_calls(client, raw, repeats)
    requests = {name: count_requests(client, sdk) for name, sdk, _ in calls}
    timers = [("raw healthcheck", raw.healthcheck)]
    for name, sdk, raw_call in calls:
        timers += [(name, sdk), ("raw " + name, raw_call)]
    for _, fn in timers:  # warm up connections and caches
        fn()
    samples: dict[str, list[float]] = {name: [] for name, _ in timers}
    for _ in range(repeats):  # round robin: every call sees the same noise
        for name, fn in timers:
            samples[name].append(elapsed(fn))

    health = statistics.median(samples["raw healthcheck"])
    rows = []
    for name, _, _ in calls:
        sdk_median = statistics.median(samples[name])
        raw_median = statistics.median(samples["raw " + name])
        rows.append({
            "call": name, "http_requests": requests[name],
            "sdk_median_ms": sdk_median * 1e3, "sdk_p95_ms": percentile(samples[name], 0.95) * 1e3,
            "raw_same_request_median_ms": raw_median * 1e3,
            "ratio_sdk_to_healthcheck": ratio(sdk_median, health),
            "ratio_sdk_to_raw_same_request": ratio(sdk_median, raw_median),
        })
    all_sdk = [s for name, _, _ in calls for s in samples[name]]
    return {
        "repeats": repeats,
        "healthcheck_median_ms": health * 1e3,
        "healthcheck_p95_ms": percentile(samples["raw healthcheck"], 0.95) * 1e3,
        "all_sdk_calls_median_ms": statistics.median(all_sdk) * 1e3,
        "calls": rows,
    }


# ------------------------------------------------------------------ report


def print_report(results: dict) -> None:
    m = results["machine"]
    print(f"\nMachine: {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, {m['lakefs_sdk']}")
    print(f"Mode: {'quick' if results['quick'] else 'full'}; total run {results['total_s']:.1f} s")

    u = results["upload"]
    print(f"\n1. Upload {u['objects']} x {u['object_bytes']} B objects + one commit")
    print(f"   {'':24}{'upload s':>10}{'commit s':>10}{'total s':>10}{'objects/s':>11}")
    print(f"   {'SDK':24}{u['sdk_upload_s']:10.3f}{u['sdk_commit_s']:10.3f}{u['sdk_total_s']:10.3f}"
          f"{u['sdk_objects_per_s']:11.0f}")
    print(f"   {'raw urllib3 POST':24}{u['raw_upload_s']:10.3f}{u['raw_commit_s']:10.3f}{u['raw_total_s']:10.3f}"
          f"{u['raw_objects_per_s']:11.0f}")
    print(f"   {'local files':24}{u['local_write_s']:10.3f}{'-':>10}{u['local_write_s']:10.3f}"
          f"{u['local_objects_per_s']:11.0f}")
    print(f"   ratios: SDK/raw {u['ratio_sdk_to_raw']:.2f}x, SDK/local {u['ratio_sdk_to_local']:.1f}x, "
          f"commit SDK/raw {u['ratio_commit_sdk_to_raw']:.2f}x")

    s = results["list"]
    print(f"\n2. List {s['objects']} committed objects (median of {s['repeats']}; setup took {s['setup_s']:.1f} s)")
    print(f"   {'':34}{'median s':>10}{'best s':>10}{'objects/s':>11}")
    for key, label in [("sdk", "SDK ref.objects() (page 100)"), ("sdk_amount_1000", "SDK ref.objects(amount=1000)"),
                       ("raw_amount_1000", "raw GET ls?amount=1000"), ("raw_amount_100", "raw GET ls?amount=100"),
                       ("local_scandir", "os.scandir local files")]:
        print(f"   {label:34}{s[key + '_median_s']:10.3f}{s[key + '_best_s']:10.3f}{s[key + '_objects_per_s']:11.0f}")
    print(f"   ratios: SDK/raw(1000) {s['ratio_sdk_to_raw_1000']:.2f}x, SDK/raw(100) {s['ratio_sdk_to_raw_100']:.2f}x, "
          f"SDK/scandir {s['ratio_sdk_to_local']:.0f}x")

    b = results["big_read"]
    print(f"\n3. Read a {b['size_mb']} MB object whole ({b['repeats']} repeats)")
    print(f"   {'':34}{'best MB/s':>10}{'median MB/s':>12}")
    for key, label in [("sdk", "SDK reader().read()"), ("raw", "raw urllib3 GET"), ("local", "local file read")]:
        print(f"   {label:34}{b[key + '_best_mb_s']:10.0f}{b[key + '_median_mb_s']:12.0f}")
    print(f"   ratios (median throughput): SDK/raw {b['ratio_sdk_to_raw']:.2f}, SDK/local {b['ratio_sdk_to_local']:.2f}")

    lat = results["latency"]
    print(f"\n4. Single SDK calls ({lat['repeats']} repeats each, round robin); raw keep-alive GET healthcheck: "
          f"median {lat['healthcheck_median_ms']:.2f} ms, p95 {lat['healthcheck_p95_ms']:.2f} ms")
    print(f"   {'call':22}{'HTTP':>5}{'median ms':>11}{'p95 ms':>9}{'raw same ms':>13}"
          f"{'SDK/health':>12}{'SDK/raw':>9}")
    for row in lat["calls"]:
        print(f"   {row['call']:22}{row['http_requests']:5d}{row['sdk_median_ms']:11.2f}{row['sdk_p95_ms']:9.2f}"
              f"{row['raw_same_request_median_ms']:13.2f}{row['ratio_sdk_to_healthcheck']:11.1f}x"
              f"{row['ratio_sdk_to_raw_same_request']:8.2f}x")
    print("   (HTTP = requests the SDK call sends; 'raw same' times only its main request)")

    print("\nTargets:")
    worst = max(lat["calls"], key=lambda row: row["sdk_median_ms"])
    pooled = lat["all_sdk_calls_median_ms"]
    print(f"   median SDK call <= {TARGET_MEDIAN_CALL_MS} ms: all calls pooled {pooled:.2f} ms "
          f"[{'PASS' if pooled <= TARGET_MEDIAN_CALL_MS else 'FAIL'}]; slowest call {worst['call']} "
          f"{worst['sdk_median_ms']:.2f} ms [{'PASS' if worst['sdk_median_ms'] <= TARGET_MEDIAN_CALL_MS else 'FAIL'}]")
    read = b["sdk_median_mb_s"]
    print(f"   {b['size_mb']} MB SDK read >= {TARGET_READ_MB_S:.0f} MB/s: median {read:.0f} MB/s "
          f"[{'PASS' if read >= TARGET_READ_MB_S else 'FAIL'}]")


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write all figures as JSON here")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL

    results: dict = {"machine": machine(), "quick": args.quick, "sizes": sizes}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lakefs-bench-") as folder:
        tmp = Path(folder)
        server = EmbeddedLakeFS(tmp / "lakefs", port=0, credentials=(KEY, SECRET))
        endpoint = server.start()
        try:
            client = lakefs.Client(host=endpoint.url, username=KEY, password=SECRET)
            raw = RawHTTP(endpoint.url)
            print(f"embedded server at {endpoint.url}; data in {tmp}", flush=True)
            print("1/4 upload + commit ...", flush=True)
            results["upload"] = bench_upload(client, raw, tmp, sizes["small_objects"])
            print("2/4 listing ...", flush=True)
            results["list"] = bench_list(client, raw, tmp, sizes["listed"], sizes["list_repeats"])
            print("3/4 big read ...", flush=True)
            results["big_read"] = bench_big_read(client, raw, tmp, sizes["big_mb"], sizes["big_repeats"])
            print("4/4 single-call latency ...", flush=True)
            results["latency"] = bench_latency(client, raw, sizes["latency_repeats"])
        finally:
            server.stop()
    results["total_s"] = time.perf_counter() - started

    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
