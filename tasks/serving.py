"""Telling the serving endpoint that @champion moved.

``sluice serve`` watches the alias on its own (every ``serving.watch_seconds``);
this call only makes the swap immediate. Where the endpoint is (and its API
key) comes from the environment: ``SLUICE_SERVING_URL`` and the first key of
``SLUICE_SERVING_API_KEYS``. Without ``SLUICE_SERVING_URL`` nothing is called.
"""

from __future__ import annotations

import os

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="reload-serving", cache_policy=NO_CACHE)
def reload_serving(expected_version: str | None, timeout: float = 300) -> str | None:
    """Ask the endpoint to load the alias's version now; the version it serves afterwards, or None when no
    endpoint is configured or it could not be reached (its watcher then swaps within its own interval)."""
    import httpx

    url = os.environ.get("SLUICE_SERVING_URL", "").rstrip("/")
    if not url:
        return None
    keys = [k.strip() for k in os.environ.get("SLUICE_SERVING_API_KEYS", "").split(",") if k.strip()]
    headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
    logger = get_run_logger()
    try:
        answer = httpx.post(f"{url}/admin/reload", headers=headers, timeout=timeout)
        answer.raise_for_status()
    except httpx.HTTPError as error:
        # the promotion itself succeeded: the endpoint's alias watcher will find the new version
        logger.warning("could not ask %s to reload (%s: %s); it will pick up version %s when it next checks "
                       "the alias", url, type(error).__name__, error, expected_version)
        return None
    served = answer.json().get("version")
    logger.info("serving endpoint %s now serves version %s", url, served)
    if expected_version is not None and str(served) != str(expected_version):
        logger.warning("serving endpoint %s serves version %s, not %s", url, served, expected_version)
    return None if served is None else str(served)
