"""Argument checks shared by the metric families: names, lengths, types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_metrics(metrics: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The requested names, in order, once each; ValueError for any unknown one."""
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in allowed]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(metrics))


def check_lengths(**named: Sequence[Any]) -> int:
    lengths = {name: len(values) for name, values in named.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("lengths differ: " + ", ".join(f"{name}={n}" for name, n in lengths.items()))
    return next(iter(lengths.values()), 0)


def check_strings(name: str, values: Sequence[Any]) -> None:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{name}[{i}] is {type(value).__name__}, expected str")
