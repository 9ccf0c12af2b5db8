"""Prefect tasks: thin wrappers over the core (``sluice.core``) that add what
orchestration needs and nothing else: retries on idempotent I/O, caching,
logging to the run, and the flow run's identity for lineage. Each task is
short and returns a small typed record."""

from __future__ import annotations

from prefect.cache_policies import NO_CACHE

from sluice.core.lineage import FlowRun

# Run every time, never answered from Prefect's cache (a task's inputs do not say whether the world
# changed). Retries are added only on idempotent I/O: see tasks/lakefs.py.
UNCACHED = {"cache_policy": NO_CACHE}


def current_flow_run() -> FlowRun:
    """The flow run this code runs in (``local`` outside one), for lineage tags and commit metadata."""
    from prefect.runtime import flow_run

    return FlowRun(id=str(flow_run.get_id() or "local"), name=str(flow_run.get_name() or ""))
