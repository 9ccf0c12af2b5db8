"""Telling the serving endpoint that @champion moved.

``sluice serve`` watches the alias on its own (every ``serving.watch_seconds``);
this call only makes the swap immediate. Where the endpoint is (and its API
key) comes from the environment: ``SLUICE_SERVING_URL`` and the first key of
``SLUICE_SERVING_API_KEYS``. Without ``SLUICE_SERVING_URL`` nothing is called.
"""

from __future__ import annotations

import os

from prefect import get_run_logger, task

from tasks import UNCACHED


@task(name="reload-serving", **UNCACHED)
def reload_serving(expected_version: str | None, timeout: float = 300) -> str | None:
    """Ask the endpoint to load the alias's version now; the version it serves afterwards, or None when no
    endpoint is configured or the reload failed (its watcher then swaps within its own interval)."""
    from sluice.serving import request_reload

    url = os.environ.get("SLUICE_SERVING_URL", "")
    if not url:
        return None
    logger = get_run_logger()
    try:
        served = request_reload(url, timeout=timeout)
    except RuntimeError as error:
        # the promotion itself succeeded: the endpoint's alias watcher will find the new version
        logger.warning("%s; it will pick up version %s when it next checks the alias", error, expected_version)
        return None
    logger.info("serving endpoint %s now serves version %s", url, served)
    if expected_version is not None and served != str(expected_version):
        logger.warning("serving endpoint %s serves version %s, not %s", url, served, expected_version)
    return served
