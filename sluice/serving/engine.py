"""The model and its generation loop: continuous (iteration-level) batching on one worker thread.

Requests are queued, at most ``max_queued_requests`` of them (more: :class:`QueueFull`, which
the server answers with HTTP 429). With ``batching="continuous"`` (the default) a request joins the
running batch at the next decode step, up to ``max_batch_size`` rows (an idle engine waits at most
``batch_wait_ms`` for company first), and a finished one leaves at once
(:class:`~sluice.serving.decoding.RunningBatch`): a short answer is not held behind a long one,
and a new request does not wait for the batch to end. With ``batching="static"`` the worker
takes the first request, waits at most ``batch_wait_ms`` for more and decodes that batch to its
end before the next one starts (kept to compare against). Either way every step is the engine's
own loop around ``model(input_ids, attention_mask=…, position_ids=…, past_key_values=…)`` rather
than ``model.generate``, so that every token reaches its request at once (streaming) and every
row has its own ``max_tokens``, ``min_tokens``, temperature, top_p, stop strings and adapter.
A client that goes away calls :meth:`Engine.cancel`: a waiting request leaves the queue, a
running one stops at the next step.

A new model version is loaded by another thread (the watcher) while this one keeps generating,
then handed over with :meth:`Engine.install`: the worker stops admitting requests, lets the
running rows finish on the model they started with, and swaps (new requests wait in the queue
meanwhile), so no request fails or mixes versions; every answer reports the version that made
it. Work that must not race a forward pass (loading a LoRA adapter into the model) runs on the
worker between steps through :meth:`Engine.call_on_worker`.

Everything runs on one thread so the event loop stays free; torch uses its own intra-op threads
for each step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sluice.serving.decoding import Row, RunningBatch

# the model's home is sluice.serving.loaded_model; re-exported for the engine's callers
from sluice.serving.loaded_model import LoadedModel as LoadedModel
from sluice.serving.loaded_model import load_model as load_model
from sluice.serving.waiting import STOP, WAKE, QueueClosed, WaitingRequests

log = logging.getLogger("sluice.serving")


# ------------------------------------------------------------------ events a request receives, in order


@dataclass(frozen=True)
class Started:
    """The request's batch started, on this model version."""

    version: str
    batch_size: int
    prompt_tokens: int


@dataclass(frozen=True)
class Delta:
    """New completion text (stop-string prefixes are held back until they are ruled out)."""

    text: str


@dataclass(frozen=True)
class Finished:
    version: str
    text: str  # the whole completion
    token_ids: list[int]  # generated tokens, end-of-turn excluded
    finish_reason: str  # stop | length | cancelled
    prompt_tokens: int
    completion_tokens: int  # generated tokens, end-of-turn included
    batch_size: int  # rows in the batch when it joined
    first_token_at: float  # time.perf_counter() when its first token was chosen
    adapter: str | None = None  # the LoRA adapter that generated it (None: the base)


@dataclass(frozen=True)
class Failed:
    error: BaseException


Event = Started | Delta | Finished | Failed


class PromptTooLong(ValueError):
    """A prompt (re-tokenized for the model that serves it) does not fit."""


class EngineStopped(RuntimeError):
    pass


# ------------------------------------------------------------------ a request


@dataclass(eq=False)
class GenerationRequest:
    """One prompt to complete. ``emit`` receives its events from the worker thread."""

    prompt: list[dict[str, str]] | str  # chat messages, or completion text
    max_tokens: int
    emit: Callable[[Event], None]
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    stream: bool = True  # False: no Delta events, only the whole text when finished (less work per token)
    prompt_ids: list[int] | None = None  # tokenized by the handler …
    encoded_by: str | None = None  # … for this version; re-tokenized if another one serves it
    ignore_eos: bool = False  # generate max_tokens whatever the model says (vLLM's extra parameter; load tests)
    min_tokens: int = 0  # no end of turn before this many tokens (vLLM's extra parameter)
    adapter: str | None = None  # decode with this LoRA adapter of the served PEFT model; None: the base
    arrived: float = field(default_factory=time.perf_counter)
    cancelled: bool = False  # set by Engine.cancel (the client went away); the row leaves at the next step


# ------------------------------------------------------------------ the engine

CANCELLED_QUEUED, CANCELLED_RUNNING = "queued", "running"  # where a request was when its client went away


class _WorkerCall:
    """A function waiting to run on the worker thread, and its outcome."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn, self.done = fn, threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as error:  # handed to the caller, which re-raises it
            self.error = error
        finally:
            self.done.set()


class Engine:
    """Holds the served model and runs every batch on one worker thread."""

    def __init__(self, *, max_batch_size: int = 8, batch_wait_ms: float = 5.0, batching: str = "continuous",
                 on_batch: Callable[[int], None] | None = None, on_swap: Callable[[str], None] | None = None,
                 on_first_token: Callable[[float], None] | None = None,
                 on_inter_token: Callable[[float], None] | None = None,
                 on_running: Callable[[int], None] | None = None,
                 on_queue: Callable[[int], None] | None = None, max_queued_requests: int = 64,
                 on_cancel: Callable[[str], None] | None = None):
        if batching not in ("continuous", "static"):
            raise ValueError(f"batching must be 'continuous' or 'static', got {batching!r}")
        self.max_batch_size, self.batch_wait, self.batching = max_batch_size, batch_wait_ms / 1000, batching
        self._on_batch, self._on_swap = on_batch, on_swap
        self._on_first_token, self._on_inter_token, self._on_running = on_first_token, on_inter_token, on_running
        self._on_queue, self._on_cancel = on_queue, on_cancel
        self._queue: WaitingRequests[GenerationRequest] = WaitingRequests(max_queued_requests)
        self._lock = threading.Lock()
        self._pending: list[tuple[LoadedModel, threading.Event]] = []
        self._calls: list[_WorkerCall] = []
        self._batch: RunningBatch | None = None
        self._model: LoadedModel | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -------------------------------------------------- the outside

    @property
    def model(self) -> LoadedModel | None:
        """The model serving now (the worker swaps it only when no row is running)."""
        return self._model

    @property
    def version(self) -> str | None:
        model = self._model
        return model.version if model else None

    @property
    def queued(self) -> int:
        """Requests waiting for a batch now."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Requests generating now."""
        batch = self._batch
        return len(batch) if batch else 0

    @property
    def max_queued_requests(self) -> int:
        return self._queue.limit

    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sluice-serving-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Finish the running rows, fail what is still queued, and end the worker."""
        self._stopped = True
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._fail_queued(EngineStopped("the server is shutting down"))
        self._run_calls()  # nobody else will

    def submit(self, request: GenerationRequest) -> None:
        """Queue the request; :class:`QueueFull` when ``max_queued_requests`` already wait."""
        if self._stopped:
            raise EngineStopped("the server is shutting down")
        try:
            self._queue.put(request)
        except QueueClosed as error:
            raise EngineStopped(str(error)) from None
        self._report_queue()

    def cancel(self, request: GenerationRequest) -> None:
        """Its client went away: a waiting request leaves the queue at once (it is never generated), a
        running one leaves its batch at the next step (the worker counts it then)."""
        request.cancelled = True
        if self._queue.remove(request):
            self._cancelled(CANCELLED_QUEUED)
            self._report_queue()

    def install(self, model: LoadedModel, timeout: float | None = None) -> bool:
        """Hand a loaded model to the worker; it serves once the running rows have finished (no new
        row joins them meanwhile). Waits until the swap happened; False if ``timeout`` passed."""
        swapped = threading.Event()
        with self._lock:
            self._pending.append((model, swapped))
        self._queue.wake()
        if not self._worker_alive():
            self._swap()  # no worker (not started, or stopped): swap here
        return swapped.wait(timeout)

    def call_on_worker(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn()`` on the worker thread between two decode steps (at once when it is idle) and
        return what it returns; its exception is raised here. For changes to the served model that
        must not race a forward pass, such as loading or removing a LoRA adapter."""
        if threading.current_thread() is self._thread:  # already between steps: waiting here would deadlock
            return fn()
        call = _WorkerCall(fn)
        with self._lock:
            self._calls.append(call)
        self._queue.wake()
        if not self._worker_alive():
            self._run_calls()
        if not call.done.wait(timeout):
            raise TimeoutError(f"the engine's worker did not run {getattr(fn, '__name__', fn)} within {timeout} s")
        if call.error is not None:
            raise call.error
        return call.result

    def adapters_in_use(self) -> set[str]:
        """The adapters of the rows generating now (read it on the worker: inside call_on_worker)."""
        batch = self._batch
        return batch.adapters_in_use() if batch else set()

    # -------------------------------------------------- the worker

    def _worker_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _report_queue(self) -> None:
        if self._on_queue:
            self._on_queue(len(self._queue))

    def _report_running(self) -> None:
        if self._on_running:
            self._on_running(self.running)

    def _cancelled(self, where: str) -> None:
        log.debug("request cancelled while %s: its client went away", where)
        if self._on_cancel:
            self._on_cancel(where)

    def _run_calls(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for call in calls:
            call.run()

    def _swap_waiting(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def _swap(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        model = pending[-1][0]  # the newest wins; older pending ones are dropped unused
        old, self._model = self._model, model
        if old is None or old.version != model.version:
            log.info("serving model version %s (was %s)", model.version, old.version if old else "none")
        if self._on_swap:
            self._on_swap(model.version)
        for _, event in pending:
            event.set()
        del old
        if model.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _fail_queued(self, error: BaseException) -> None:
        for request in self._queue.drain():
            request.emit(Failed(error))
        self._report_queue()

    def _collect(self, first: GenerationRequest) -> list[GenerationRequest]:
        batch = [first]
        # at most batch_wait after the first request arrived: one that waited out a running batch
        # takes whoever queued meanwhile and goes at once
        deadline = min(first.arrived, time.perf_counter()) + self.batch_wait
        while len(batch) < self.max_batch_size:
            item = self._queue.take(max(0.0, deadline - time.perf_counter()))
            if item is None:
                break
            batch.append(item)
        self._report_queue()
        return batch

    def _without_cancelled(self, batch: list[GenerationRequest]) -> list[GenerationRequest]:
        """The batch less the requests whose clients left while it was being collected."""
        for request in batch:
            if request.cancelled:
                self._cancelled(CANCELLED_QUEUED)
        return [request for request in batch if not request.cancelled]

    def _run(self) -> None:
        while True:
            item = self._queue.next()
            self._run_calls()
            if item is STOP:
                self._swap()
                return
            if item is WAKE:
                self._swap()
                continue
            assert isinstance(item, GenerationRequest)
            first = self._collect(item)  # an idle engine waits batch_wait for company, in both modes
            self._swap()
            model = self._model
            first = self._without_cancelled(first)
            if model is None:
                for request in first:
                    request.emit(Failed(RuntimeError("no model version is loaded yet")))
            elif first:
                try:
                    self._decode(model, first)
                except Exception as error:  # a failed batch fails its requests, never the worker
                    self._fail_batch(error, first)
                finally:
                    self._batch = None
                    self._report_running()

    def _fail_batch(self, error: Exception, first: list[GenerationRequest]) -> None:
        batch = self._batch
        requests = [row.request for row in batch.rows] if batch and batch.rows else first
        log.exception("generation failed for a batch of %d", len(requests))
        for request in requests:
            request.emit(Failed(error))

    def _decode(self, model: LoadedModel, first: list[GenerationRequest]) -> None:
        """Decode until no row is left; in continuous mode new requests join at every step."""
        batch = self._batch = RunningBatch(model, on_token=self._token_chosen,
                                           on_cancelled=lambda: self._cancelled(CANCELLED_RUNNING))
        joining = first
        while True:
            joining = self._prepare(model, joining)
            if joining:
                if self._on_batch:
                    self._on_batch(len(batch) + len(joining))
                self._admit(batch, joining)
            self._report_running()
            if not batch.rows:
                return
            batch.step()
            self._run_calls()
            joining = self._joining(batch)

    def _admit(self, batch: RunningBatch, joining: list[GenerationRequest]) -> None:
        """Prefill the joining requests into the batch; if that fails, they fail and the running rows go on."""
        if not batch.rows:
            batch.admit(joining)  # nothing runs yet: a failure is the whole batch's (see _fail_batch)
            return
        try:
            batch.admit(joining)
        except Exception as error:
            log.exception("prefill failed for %d requests joining a batch of %d", len(joining), len(batch))
            for request in joining:
                request.emit(Failed(error))

    def _joining(self, batch: RunningBatch) -> list[GenerationRequest]:
        """Requests that join the running rows now: none in static mode, while a model waits to be
        swapped in, or when the model's cache cannot take new rows."""
        if self.batching != "continuous" or not batch.joinable or self._swap_waiting() or self._stopped:
            return []
        joining = []
        while len(batch) + len(joining) < self.max_batch_size:
            item = self._queue.take(0)
            if item is None:
                break
            joining.append(item)
        if joining:
            self._report_queue()
        return self._without_cancelled(joining)

    def _token_chosen(self, row: Row) -> None:
        if row.generated == 1:
            if self._on_first_token:
                self._on_first_token(row.first_token_at - row.request.arrived)
        elif self._on_inter_token:
            self._on_inter_token(row.token_gap)

    def _prepare(self, model: LoadedModel, batch: list[GenerationRequest]) -> list[GenerationRequest]:
        ready = []
        for request in batch:
            try:
                if request.prompt_ids is None or request.encoded_by != model.version:
                    request.prompt_ids, request.encoded_by = model.encode(request.prompt), model.version
                if len(request.prompt_ids) + request.max_tokens > model.context_length:
                    raise PromptTooLong(
                        f"the prompt ({len(request.prompt_ids)} tokens) plus max_tokens ({request.max_tokens}) "
                        f"exceeds model version {model.version}'s context of {model.context_length} tokens")
                if not request.prompt_ids:
                    raise PromptTooLong("the prompt is empty after tokenization")
                if request.adapter and request.adapter not in getattr(model.model, "peft_config", {}):
                    # queued for an adapter of a base that was swapped out meanwhile: this request only fails
                    raise LookupError(f"LoRA adapter {request.adapter!r} is not loaded on model version "
                                      f"{model.version}")
            except Exception as error:
                request.emit(Failed(error))
                continue
            ready.append(request)
        return ready

# ------------------------------------------------------------------ a blocking helper (tests, scripts)


def generate_blocking(engine: Engine, prompt: list[dict[str, str]] | str, *, max_tokens: int,
                      temperature: float = 0.0, top_p: float = 1.0, stop: list[str] | None = None,
                      seed: int | None = None, timeout: float = 120) -> Finished:
    """Submit one request and wait for its answer (raises what generation raised)."""
    done: queue.Queue[Event] = queue.Queue()

    def emit(event: Event) -> None:
        if isinstance(event, Finished | Failed):
            done.put(event)

    engine.submit(GenerationRequest(prompt=prompt, max_tokens=max_tokens, emit=emit, temperature=temperature,
                                    top_p=top_p, stop=list(stop or []), seed=seed, stream=False))
    event = done.get(timeout=timeout)
    if isinstance(event, Failed):
        raise event.error
    assert isinstance(event, Finished)
    return event
