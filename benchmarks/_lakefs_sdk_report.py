"""The printed report of benchmarks/lakefs_sdk_roundtrips.py: one table per
part that ran, then the targets."""

from __future__ import annotations

TARGET_MEDIAN_CALL_MS = 5.0
TARGET_READ_MB_S = 200.0


def print_report(results: dict) -> None:
    m = results["machine"]
    print(f"\nMachine: {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, {m['lakefs_sdk']}")
    print(f"Mode: {'quick' if results['quick'] else 'full'}; total run {results['total_s']:.1f} s; "
          f"server code: {results['server_code']}")

    if "upload" in results:
        print_upload(results["upload"])
    if "list" in results:
        print_list(results["list"])
    if "big_read" in results:
        print_big_read(results["big_read"])
    if "latency" in results:
        print_latency(results["latency"])
    print_targets(results)


def print_upload(u: dict) -> None:
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



def print_list(s: dict) -> None:
    print(f"\n2. List {s['objects']} committed objects (median of {s['repeats']}; setup took {s['setup_s']:.1f} s)")
    print(f"   {'':34}{'median s':>10}{'best s':>10}{'objects/s':>11}")
    for key, label in [("sdk", "SDK ref.objects() (page 100)"), ("sdk_amount_1000", "SDK ref.objects(amount=1000)"),
                       ("raw_amount_1000", "raw GET ls?amount=1000"), ("raw_amount_100", "raw GET ls?amount=100"),
                       ("local_scandir", "os.scandir local files")]:
        print(f"   {label:34}{s[key + '_median_s']:10.3f}{s[key + '_best_s']:10.3f}{s[key + '_objects_per_s']:11.0f}")
    print(f"   ratios: SDK/raw(1000) {s['ratio_sdk_to_raw_1000']:.2f}x, SDK/raw(100) {s['ratio_sdk_to_raw_100']:.2f}x, "
          f"SDK/scandir {s['ratio_sdk_to_local']:.0f}x")



def print_big_read(b: dict) -> None:
    print(f"\n3. Read a {b['size_mb']} MB object whole ({b['repeats']} repeats)")
    print(f"   {'':34}{'best MB/s':>10}{'median MB/s':>12}")
    for key, label in [("sdk", "SDK reader().read()"), ("raw", "raw urllib3 GET"), ("local", "local file read")]:
        print(f"   {label:34}{b[key + '_best_mb_s']:10.0f}{b[key + '_median_mb_s']:12.0f}")
    print(f"   ratios (median throughput): SDK/raw {b['ratio_sdk_to_raw']:.2f}, "
          f"SDK/local {b['ratio_sdk_to_local']:.2f}")



def print_latency(lat: dict) -> None:
    print(f"\n4. Single SDK calls ({lat['repeats']} repeats each, round robin); raw keep-alive GET healthcheck: "
          f"median {lat['healthcheck_median_ms']:.2f} ms, p95 {lat['healthcheck_p95_ms']:.2f} ms")
    print(f"   {'call':22}{'HTTP':>5}{'median ms':>11}{'p95 ms':>9}{'raw same ms':>13}"
          f"{'SDK/health':>12}{'SDK/raw':>9}")
    for row in lat["calls"]:
        print(f"   {row['call']:22}{row['http_requests']:5d}{row['sdk_median_ms']:11.2f}{row['sdk_p95_ms']:9.2f}"
              f"{row['raw_same_request_median_ms']:13.2f}{row['ratio_sdk_to_healthcheck']:11.1f}x"
              f"{row['ratio_sdk_to_raw_same_request']:8.2f}x")
    print("   (HTTP = requests the SDK call sends; 'raw same' times only its main request)")



def print_targets(results: dict) -> None:
    print("\nTargets:")
    if lat := results.get("latency"):
        worst = max(lat["calls"], key=lambda row: row["sdk_median_ms"])
        pooled = lat["all_sdk_calls_median_ms"]
        print(f"   median SDK call <= {TARGET_MEDIAN_CALL_MS} ms: all calls pooled {pooled:.2f} ms "
              f"[{'PASS' if pooled <= TARGET_MEDIAN_CALL_MS else 'FAIL'}]; slowest call {worst['call']} "
              f"{worst['sdk_median_ms']:.2f} ms "
              f"[{'PASS' if worst['sdk_median_ms'] <= TARGET_MEDIAN_CALL_MS else 'FAIL'}]")
    if b := results.get("big_read"):
        read = b["sdk_median_mb_s"]
        print(f"   {b['size_mb']} MB SDK read >= {TARGET_READ_MB_S:.0f} MB/s: median {read:.0f} MB/s "
              f"[{'PASS' if read >= TARGET_READ_MB_S else 'FAIL'}]")
