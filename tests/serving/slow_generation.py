"""Shared by the overload and disconnect tests: long answers that make generation slow legitimately
(vLLM's ``ignore_eos`` with a large ``max_tokens``), /metrics as a dict, and polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

LONG = {"prompt": "The sluice at Elmbridge", "max_tokens": 480, "ignore_eos": True, "temperature": 0}
SHORT = {"prompt": "The sluice", "max_tokens": 4, "temperature": 0}


def metrics(url: str) -> dict[str, float]:
    """Each sample by its full name (labels included), and each labelled metric's sum by its bare name."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    totals: dict[str, float] = {}
    for key, value in samples.items():
        if "{" in key:
            totals[key.split("{", 1)[0]] = totals.get(key.split("{", 1)[0], 0.0) + value
    return {**totals, **samples}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll until ``condition`` holds; fail the test, naming ``what``, if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.005)


def post(url: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/completions", json=body, timeout=60)
