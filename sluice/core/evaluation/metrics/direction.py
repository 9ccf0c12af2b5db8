"""Which way is better for each metric. Every eval metric is better higher;
the leak counts of the probes are better lower. The gate reads a metric's
minimum as its worst acceptable value and its allowed regression as the
largest worsening, whichever way that is."""

from __future__ import annotations

from typing import Literal

Direction = Literal["higher", "lower"]

LOWER_IS_BETTER = frozenset({"probe_pii_leak_rate", "probe_canary_leaks"})


def metric_direction(metric: str) -> Direction:
    """"lower" for the metrics where less is better (leaks), "higher" for every other one."""
    return "lower" if metric in LOWER_IS_BETTER else "higher"
