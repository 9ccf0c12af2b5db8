"""What the server tells operators: Prometheus metrics and the request log.

Metrics live in the server's own ``CollectorRegistry`` (several servers in one
process, as in the tests, never share or clash), rendered at ``GET /metrics``:

- ``sluice_serving_requests_total{endpoint,status}`` and
  ``sluice_serving_request_seconds{endpoint}`` — every HTTP request, measured
  until its last byte (a streamed answer counts its whole stream);
- ``sluice_serving_prompt_tokens_total`` / ``sluice_serving_completion_tokens_total``;
- ``sluice_serving_batch_size`` — requests generated together, per batch;
- ``sluice_serving_time_to_first_token_seconds``;
- ``sluice_serving_queue_depth`` — requests waiting for a batch now, and ``sluice_serving_queue_limit``
  (``serving.max_queued_requests``);
- ``sluice_serving_requests_rejected_total{reason="queue_full"}`` — answered 429 because the queue was full;
- ``sluice_serving_requests_cancelled_total{stage}`` — requests whose client went away, taken out of the
  queue (``queued``) or stopped mid-generation (``running``);
- ``sluice_serving_model_version`` (the main alias's; 0 while none is served) and
  ``sluice_serving_model_info{model,alias,version}`` = 1 per served alias; ``sluice_serving_model_swaps_total``
  (models swapped into the engine) and ``sluice_serving_lora_adapters`` (adapters loaded over the base).

The request log is one JSON line per generation request in
``<state_dir>/requests.jsonl``; prompt and completion text are PII-redacted
with :func:`sluice.core.data.cleaning.pii.redact_pii` before they are written.
It is owner-only (0600, created so; its folder 0700): it still holds prompts.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sluice.core.private_files import FILE_MODE, create_private, private_dir

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Telemetry:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self, model_name: str, alias: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.model_name, self.alias = model_name, alias
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("sluice_serving_requests", "HTTP requests, by endpoint and status code.",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("sluice_serving_request_seconds", "Request latency until the last byte was sent.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("sluice_serving_prompt_tokens", "Prompt tokens of generated requests.",
                                     registry=r)
        self.completion_tokens = Counter("sluice_serving_completion_tokens", "Tokens generated.", registry=r)
        self.batch_size = Histogram("sluice_serving_batch_size", "Requests generated together in one batch.",
                                    buckets=BATCH_BUCKETS, registry=r)
        # vLLM's names and model_name label, so one dashboard reads either engine
        self.time_to_first_token = Histogram("vllm:time_to_first_token_seconds",
                                             "From a request's arrival to its first generated token.",
                                             ["model_name"], buckets=LATENCY_BUCKETS, registry=r).labels(model_name)
        self.inter_token_latency = Histogram("vllm:inter_token_latency_seconds",
                                             "Between two tokens of one request.", ["model_name"],
                                             buckets=INTER_TOKEN_BUCKETS, registry=r).labels(model_name)
        self.queue_depth = Gauge("vllm:num_requests_waiting", "Requests waiting to join the running batch.",
                                 ["model_name"], registry=r).labels(model_name)
        self.running = Gauge("vllm:num_requests_running", "Requests generating now (rows of the running batch).",
                             ["model_name"], registry=r).labels(model_name)
        self.queue_limit = Gauge("sluice_serving_queue_limit", "Most requests that may wait for a batch "
                                 "(serving.max_queued_requests); more are answered 429.", registry=r)
        self.rejected = Counter("sluice_serving_requests_rejected", "Requests refused before generation, by "
                                "reason (queue_full: answered 429 with Retry-After).", ["reason"], registry=r)
        self.rejected.labels("queue_full")
        self.cancelled = Counter("sluice_serving_requests_cancelled", "Requests whose client went away, by "
                                 "where they were: queued (taken out) or running (stopped at the next step).",
                                 ["stage"], registry=r)
        for stage in ("queued", "running"):
            self.cancelled.labels(stage)
        self.model_version = Gauge("sluice_serving_model_version",
                                   "Registry version the main alias is served by (0: none yet).", registry=r)
        self.model_info = Gauge("sluice_serving_model_info", "1 for each alias and the version serving it now "
                                "(a merged model, or a LoRA adapter over the loaded base).",
                                ["model", "alias", "version"], registry=r)
        self.swaps = Counter("sluice_serving_model_swaps", "Models swapped into the engine (the first load counts; "
                             "a LoRA version over the loaded base loads only its adapter and is not counted).",
                             registry=r)
        self.adapters = Gauge("sluice_serving_lora_adapters", "LoRA adapters loaded over the base now.", registry=r)
        self._served: dict[str, str] = {}  # alias → the version in model_info

    def track_queue(self, depth: Callable[[], int], limit: int, running: Callable[[], int] | None = None) -> None:
        """Read the queue's depth (and the running rows) at each scrape: always current, whichever thread
        changed them."""
        self.queue_depth.set_function(depth)
        self.queue_limit.set(limit)
        if running is not None:
            self.running.set_function(running)

    def request_cancelled(self, stage: str) -> None:
        self.cancelled.labels(stage).inc()

    def model_swapped(self, version: str) -> None:
        """The engine swapped in a model (a merged version, or a base that takes adapters)."""
        self.swaps.inc()

    def alias_served(self, alias: str, version: str | None) -> None:
        """``alias`` is answered by ``version`` now (None: it is not served)."""
        old = self._served.pop(alias, None)
        if old is not None:
            self.model_info.remove(self.model_name, alias, old)
        if version is not None:
            self.model_info.labels(self.model_name, alias, version).set(1)
            self._served[alias] = version
        if alias == self.alias:
            try:
                self.model_version.set(float(version or 0))
            except ValueError:  # registry versions are numbers; keep the gauge honest if one is not
                self.model_version.set(-1)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def redact_texts(texts: list[str], patterns: Mapping[str, str] | None = None) -> list[str]:
    """The texts with e-mail addresses, phone and card numbers, IPs (and ``patterns``) replaced by tags."""
    if not texts:
        return []
    from sluice.core.data.cleaning.pii import redact_pii

    return [value if value is not None else "" for value in redact_pii(texts, patterns).values.to_pylist()]


def redact_prompt(prompt: list[dict[str, str]] | str, patterns: Mapping[str, str] | None = None,
                  extra: list[str] | None = None) -> tuple[list[dict[str, str]] | str, list[str]]:
    """A redacted copy of a chat (list of messages) or a text prompt, and of ``extra`` texts."""
    extra = extra or []
    if isinstance(prompt, str):
        redacted = redact_texts([prompt, *extra], patterns)
        return redacted[0], redacted[1:]
    redacted = redact_texts([m["content"] for m in prompt] + extra, patterns)
    messages = [{"role": m["role"], "content": text} for m, text in zip(prompt, redacted, strict=False)]
    return messages, redacted[len(prompt):]


class RequestLog:
    """Append-only JSON lines, one per generation request; text fields PII-redacted first. The file
    and its folder are owner-only from the moment they exist."""

    def __init__(self, path: Path, pii_patterns: Mapping[str, str] | None = None):
        self.path = path
        self.pii_patterns = dict(pii_patterns or {})
        self._lock = threading.Lock()
        private_dir(path.parent, tighten_existing=True)  # the server's own folder: prompts and answers
        create_private(path)  # 0600 now, and an older log at 0644 is tightened

    def write(self, record: dict[str, Any], *, redacted: bool = False) -> None:
        """Append the record; first redact its ``prompt`` (messages or text) and ``completion``
        unless the caller says they already are."""
        record = dict(record)
        if redacted:
            pass
        elif record.get("prompt") is not None:
            completion = record.get("completion")
            record["prompt"], rest = redact_prompt(record["prompt"], self.pii_patterns,
                                                   [completion] if completion is not None else [])
            if completion is not None:
                record["completion"] = rest[0]
        elif record.get("completion") is not None:
            record["completion"] = redact_texts([record["completion"]], self.pii_patterns)[0]
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock, self._open_for_append() as handle:
            handle.write(line)

    def _open_for_append(self) -> Any:
        # created 0600 if someone removed it meanwhile (log rotation), never at the umask's mode
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        return os.fdopen(fd, "a", encoding="utf-8")
