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

Before/after comparisons in one session: ``--parts upload,latency`` runs only
those parts, and ``--server-code DIR`` runs the server from the ``sluice``
package under DIR (a copy of other code, e.g. ``git archive HEAD sluice``)
while the SDK side stays the same.

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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `benchmarks` lives at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks._lakefs_sdk_report import print_report  # noqa: E402
from sluice.shell.local_lakefs import EmbeddedLakeFS  # noqa: E402

KEY, SECRET = "AKIABENCH", "bench-secret"
MB = 1_000_000
SMALL_SIZE = 1024

FULL = {"small_objects": 1000, "listed": 10_000, "big_mb": 100, "big_repeats": 7,
        "list_repeats": 3, "latency_repeats": 200}
QUICK = {"small_objects": 100, "listed": 1000, "big_mb": 10, "big_repeats": 3,
         "list_repeats": 2, "latency_repeats": 30}

PARTS = ("upload", "list", "big_read", "latency")


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


# ------------------------------------------------------------------ main


def server_code_env(code: Path | None) -> dict[str, str]:
    """Environment that makes ``python -m sluice`` import the package under
    ``code``: first on the path, and the working directory kept off it."""
    if code is None:
        return {}
    if not (code / "sluice" / "__init__.py").is_file():
        raise SystemExit(f"--server-code {code}: no sluice package there")
    return {"PYTHONPATH": str(code.resolve()), "PYTHONSAFEPATH": "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write all figures as JSON here")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--server-code", type=Path, metavar="DIR",
                        help="run the server from the sluice package under DIR (before/after comparisons)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {','.join(PARTS)}")

    results: dict = {"machine": machine(), "quick": args.quick, "sizes": sizes, "parts": parts,
                     "server_code": str(args.server_code or "this checkout")}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lakefs-bench-") as folder:
        tmp = Path(folder)
        server = EmbeddedLakeFS(tmp / "lakefs", port=0, credentials=(KEY, SECRET),
                                extra_env=server_code_env(args.server_code))
        endpoint = server.start()
        try:
            client = lakefs.Client(host=endpoint.url, username=KEY, password=SECRET)
            raw = RawHTTP(endpoint.url)
            print(f"embedded server at {endpoint.url}; data in {tmp}; code: {results['server_code']}", flush=True)
            runs = {
                "upload": lambda: bench_upload(client, raw, tmp, sizes["small_objects"]),
                "list": lambda: bench_list(client, raw, tmp, sizes["listed"], sizes["list_repeats"]),
                "big_read": lambda: bench_big_read(client, raw, tmp, sizes["big_mb"], sizes["big_repeats"]),
                "latency": lambda: bench_latency(client, raw, sizes["latency_repeats"]),
            }
            for number, part in enumerate(parts, 1):
                print(f"{number}/{len(parts)} {part} ...", flush=True)
                results[part] = runs[part]()
        finally:
            server.stop()
    results["total_s"] = time.perf_counter() - started

    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
