"""Merge → flow-run start latency on the local stack.

Starts ``sluice up`` (embedded lakeFS, MLflow, Prefect server + process worker,
event bridge, serving) in a temporary folder, then N times: merges a one-file
branch into main through the lakeFS SDK and waits for the pipeline-on-merge
flow run pinned to that merge commit to start running. Each merge waits for
the previous run to finish (it completes at once: no training data is
published in this repository), so runs do not queue behind each other.

Reported per merge, from Prefect's own records:
- merge → event: the merge call returning until Prefect received the bridge's
  event (lakeFS post-merge hook → bridge → ``POST /api/events``);
- event → run created: the automation (trigger + run-deployment action);
- created → pending: the worker's poll picking the run up;
- pending → running: the flow-run subprocess starting (Python, Prefect, the flow's imports, the pull step);
- merge → running: the whole, against the target p95 ≤ 3 s.

Side by side in the same session, the floor set by the worker alone: N runs
of the same deployment created through the API (`run_deployment`, no event),
created → running.

Run:

    .venv/bin/python benchmarks/trigger_latency.py [--merges 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, quiet_offline_environment  # noqa: E402

quiet_offline_environment()
ZERO_COMMIT = "0" * 64


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p95": round(percentile(values, 95), 3),
            "max": round(max(values), 3), "min": round(min(values), 3)}


def wait_for_run(client, deployment_id, commit_id: str, timeout: float = 60):  # type: ignore[no-untyped-def]
    """The flow run for this commit once it is in a final state (its state history says when it started)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]))):
            if run.parameters.get("commit_id") == commit_id and run.state and run.state.is_final():
                return run
        time.sleep(0.2)
    raise TimeoutError(f"no finished flow run for {commit_id} within {timeout} s")


def state_time(client, run, state: str) -> datetime:  # type: ignore[no-untyped-def]
    """When the run first entered a state (PENDING: the worker took it; RUNNING: its process started)."""
    return next(s.timestamp for s in client.read_flow_run_states(run.id) if s.type.value == state)


def event_received(client, commit_id: str) -> datetime | None:
    from prefect.events.filters import EventFilter, EventNameFilter

    page = client.read_events(filter=EventFilter(event=EventNameFilter(name=["lakefs.merge.completed"])), limit=50)
    found = [e for e in page.events if e.payload.get("commit_id") == commit_id]
    return found[0].received if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--merges", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import lakefs
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    state_dir = Path(tempfile.mkdtemp(prefix="sluice-trigger-bench-")) / "stack"
    started = time.perf_counter()
    up = subprocess.run([sys.executable, "-m", "sluice", "up", "--free-ports", "--state-dir", str(state_dir)],
                        cwd=ROOT, capture_output=True, text=True, check=False)
    if up.returncode != 0:
        raise SystemExit(up.stdout + up.stderr)
    stack_seconds = time.perf_counter() - started
    env = dict(line.split("=", 1) for line in (state_dir / "stack.env").read_text().splitlines())
    rows: list[dict[str, float]] = []
    floor: list[float] = []
    try:
        lake = lakefs.Client(host=env["LAKECTL_SERVER_ENDPOINT_URL"],
                             username=env["LAKECTL_CREDENTIALS_ACCESS_KEY_ID"],
                             password=env["LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"])
        repo = lakefs.Repository("sluice-data", client=lake)
        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("pipeline-on-merge/pipeline-on-merge")
            for i in range(args.merges):
                branch = repo.branch(f"bench-{i}").create(source_reference="main")
                branch.object(f"bench/{i}.txt").upload(f"merge {i}".encode())
                branch.commit(message=f"bench {i}")
                merged_at = datetime.now(UTC)
                commit = str(branch.merge_into(repo.branch("main")))
                run = wait_for_run(client, deployment.id, commit)
                received = event_received(client, commit)
                pending, running = state_time(client, run, "PENDING"), state_time(client, run, "RUNNING")
                rows.append({"merge_to_event": (received - merged_at).total_seconds() if received else float("nan"),
                             "event_to_created": (run.created - received).total_seconds() if received else float("nan"),
                             "created_to_pending": (pending - run.created).total_seconds(),
                             "pending_to_running": (running - pending).total_seconds(),
                             "merge_to_running": (running - merged_at).total_seconds()})
                print(f"merge {i + 1:>2}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rows[-1].items()), flush=True)
            for i in range(args.merges):
                run = run_deployment(deployment.id, parameters={"commit_id": f"{i:064x}"}, timeout=60)
                floor.append((state_time(client, run, "RUNNING") - run.created).total_seconds())
            print("API-created runs, created → running: " + ", ".join(f"{v:.2f}" for v in floor), flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "sluice", "down", "--state-dir", str(state_dir)], cwd=ROOT,
                       capture_output=True, check=False)

    result = {
        "benchmark": "trigger_latency", "merges": args.merges, "stack_start_seconds": round(stack_seconds, 1),
        "machine": machine(["prefect", "lakefs", "mlflow"]),
        "merge_to_running": summary([r["merge_to_running"] for r in rows]),
        "merge_to_event": summary([r["merge_to_event"] for r in rows]),
        "event_to_created": summary([r["event_to_created"] for r in rows]),
        "created_to_pending": summary([r["created_to_pending"] for r in rows]),
        "pending_to_running": summary([r["pending_to_running"] for r in rows]),
        "api_created_to_running": summary(floor),
        "target_p95_seconds": 3.0,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
