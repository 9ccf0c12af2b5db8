"""``/metrics`` of the front door in backend vllm: its own registry merged with each replica's
``/metrics`` text, every engine sample labelled ``replica="<set>#<i>"`` (so vLLM's own
``vllm:num_requests_running``, ``vllm:time_to_first_token_seconds``… are there per engine).

Families of the same name (the built-in stand-in engine exposes ``sluice_serving_*`` like the
front door) are merged into one, so the text stays valid Prometheus exposition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator

import httpx

log = logging.getLogger("sluice.serving.vllm")

SCRAPE_TIMEOUT_S = 2.0


def merge_metrics(own: bytes, engines: Iterable[tuple[str, str]]) -> bytes:
    """``own`` (the front door's exposition) and each ``(replica label, exposition text)``, as one
    exposition; engine samples get ``replica="<label>"``."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.samples import Sample

    families: dict[str, Metric] = {}

    def add(metric: Metric, replica: str | None) -> None:
        merged = families.setdefault(metric.name, Metric(metric.name, metric.documentation, metric.type,
                                                         metric.unit))
        for sample in metric.samples:
            labels = dict(sample.labels) if replica is None else {**sample.labels, "replica": replica}
            merged.samples.append(Sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar))

    for metric in text_string_to_metric_families(own.decode()):
        add(metric, None)
    for replica, text in engines:
        for metric in text_string_to_metric_families(text):
            add(metric, replica)

    class _Merged:
        def collect(self) -> Iterator[Metric]:
            yield from families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())  # type: ignore[arg-type]
    return generate_latest(registry)


async def scrape(client: httpx.AsyncClient, targets: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(label, text)`` of each ``(label, base url)`` that answered; one that did not is left out (logged)."""

    async def one(label: str, url: str) -> tuple[str, str] | None:
        try:
            response = await client.get(f"{url}/metrics", timeout=SCRAPE_TIMEOUT_S)
            response.raise_for_status()
            return label, response.text
        except httpx.HTTPError as error:
            log.warning("engine %s: /metrics failed (%s); its samples are left out of this scrape", label, error)
            return None

    answers = await asyncio.gather(*(one(label, url) for label, url in targets))
    return [answer for answer in answers if answer is not None]
