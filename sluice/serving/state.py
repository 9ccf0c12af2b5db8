"""The running server's parts (engine, alias watcher, telemetry, feedback store, request log,
API keys), what it can say about itself, and the request-log rows it writes.

``create_app`` builds one :class:`ServingState` per app and keeps it on ``app.state.serving``;
the routes get it from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sluice.core.config import SluiceConfig
from sluice.serving.adapters import ServedModels
from sluice.serving.api import ApiError
from sluice.serving.canary import RoutedApiError
from sluice.serving.engine import Engine, Finished
from sluice.serving.feedback import FeedbackStore
from sluice.serving.model_source import AliasWatcher
from sluice.serving.telemetry import RequestLog, Telemetry, redact_prompt


@dataclass
class ServingState:
    config: SluiceConfig
    engine: Engine
    watcher: AliasWatcher  # or the engine server's LocalModel (sluice.serving.engine_server): same surface
    served: ServedModels  # what a request's model names: aliases, versions, LoRA adapters
    telemetry: Telemetry
    feedback: FeedbackStore
    request_log: RequestLog
    api_keys: list[str]
    started: float = field(default_factory=time.time)

    @property
    def model_name(self) -> str:
        return self.config.registry.model_name

    @property
    def uri(self) -> str:
        return self.watcher.uri

    @property
    def pii_patterns(self) -> dict[str, str]:
        return self.config.data.cleaning.pii_patterns

    def not_ready(self) -> str:
        """Why nothing is served yet."""
        status, serving = self.watcher.status, self.config.serving
        if status.loading:
            return f"loading version {status.loading} of {self.uri}"
        if status.last_error:
            return f"nothing served yet: {status.last_error}"
        if status.last_check is None:
            return f"starting: {self.uri} has not been looked up yet"
        return (f"no version of {self.uri} exists yet: waiting for a first one (the alias is checked every "
                f"{serving.watch_seconds:g} s; POST /admin/reload checks at once)")

    def record_answer(self, *, response_id: str, endpoint: str, kind: str, prompt: list[dict[str, str]] | str,
                      done: Finished, version: str, arrived: float, stream: bool, params: dict[str, Any],
                      route: dict[str, Any] | None = None) -> None:
        """Log the request and keep the answer for feedback (runs on a worker thread); ``route``: the alias
        that answered and whether the canary split chose it."""
        redacted_prompt, (completion,) = redact_prompt(prompt, self.pii_patterns, [done.text])
        self.feedback.record_response(response_id, endpoint=kind, model_version=version,
                                      prompt=redacted_prompt, completion=completion,
                                      finish_reason=done.finish_reason)
        self.request_log.write({
            "id": response_id, "time": datetime.now(UTC).isoformat(), "endpoint": endpoint, "status": 200,
            "model": self.model_name, "model_version": version, **(route or {}), "stream": stream,
            "latency_ms": round(1000 * (time.perf_counter() - arrived), 2),
            "time_to_first_token_ms": round(1000 * (done.first_token_at - arrived), 2),
            "batch_size": done.batch_size, "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens, "finish_reason": done.finish_reason, "params": params,
            "prompt": redacted_prompt, "completion": completion}, redacted=True)

    def record_rejection(self, endpoint: str, error: ApiError, arrived: float) -> None:
        """Log a generation request answered with an error (runs on a worker thread); one that failed after
        it was routed names the version and alias it went to."""
        routed = error if isinstance(error, RoutedApiError) else None
        self.request_log.write({"id": None, "time": datetime.now(UTC).isoformat(), "endpoint": endpoint,
                                "status": error.status, "model": self.model_name,
                                "model_version": routed.version if routed else self.watcher.served_version(),
                                **(routed.route.log_fields() if routed else {}),
                                "latency_ms": round(1000 * (time.perf_counter() - arrived), 2),
                                "error": {"message": error.message, "code": error.code, "param": error.param}},
                               redacted=True)
