"""The model and its generation loop: dynamic batching on one worker thread.

Requests are queued, at most ``max_queued_requests`` of them (more: :class:`QueueFull`, which
the server answers with HTTP 429). The worker takes the first, waits at most
``batch_wait_ms`` for more (up to ``max_batch_size``), left-pads the prompts
and decodes them together, one token per step, with the KV cache — its own
loop around ``model(input_ids, attention_mask=…, position_ids=…,
past_key_values=…)`` rather than ``model.generate``, so that every step's
token reaches its request at once (streaming) and every row has its own
``max_tokens``, temperature, top_p and stop strings. A row that finishes (end
of turn, a stop string, its token budget, or its client gone) leaves the
batch: its rows are dropped from the cache and the rest decode on. A client that
goes away calls :meth:`Engine.cancel`: a waiting request leaves the queue, a
running one stops at the next step.

A new model version is loaded by another thread (the watcher) while this one
keeps generating, then handed over with :meth:`Engine.install`; the worker
swaps it in between batches. A batch that already started finishes on the
model it started with, so no request fails or mixes versions; every
answer reports the version that generated it.

Everything runs on one thread so the event loop stays free; torch uses its
own intra-op threads for each step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    batch_size: int
    first_token_at: float  # time.perf_counter() when its first token was chosen


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
    arrived: float = field(default_factory=time.perf_counter)
    cancelled: bool = False  # set by Engine.cancel (the client went away); the row leaves at the next step


class _Row:
    """A request inside a running batch: its generated tokens and the text sent so far."""

    def __init__(self, request: GenerationRequest, model: LoadedModel, batch_size: int):
        self.request, self.model, self.batch_size = request, model, batch_size
        self.ids: list[int] = []
        self.generated = 0
        self.sent = 0  # characters of the completion already emitted
        self.text = ""
        self.done = False
        self.first_token_at = 0.0
        # neither streamed nor cut at stop strings: the text is decoded once, at the end
        self.lazy = not request.stream and not request.stop
        self.generator = None
        if request.temperature > 0 and request.seed is not None:
            import torch

            self.generator = torch.Generator(device=model.device).manual_seed(request.seed)

    @property
    def prompt_tokens(self) -> int:
        return len(self.request.prompt_ids or [])

    def push(self, token: int) -> bool:
        """Take one generated token; True when the row is finished (and its events were sent)."""
        self.generated += 1
        if self.generated == 1:
            self.first_token_at = time.perf_counter()
        if token in self.model.eos_ids and not self.request.ignore_eos:
            return self._finish("stop")
        self.ids.append(token)
        if self.lazy:
            if len(self.ids) >= self.request.max_tokens or \
                    self.prompt_tokens + self.generated >= self.model.context_length:
                return self._finish("length")
            return False
        text = self.model.decode(self.ids)
        stops = [(text.find(s), s) for s in self.request.stop if s and s in text]
        if stops:
            cut = min(stops)[0]
            self.text = text[:cut]
            return self._finish("stop")
        self.text = text
        if len(self.ids) >= self.request.max_tokens or self.prompt_tokens + self.generated >= self.model.context_length:
            return self._finish("length")
        hold = 0
        for stop in self.request.stop:  # the longest tail that could still become a stop string
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if stop.startswith(text[-size:]):
                    hold = size
                    break
        safe = len(text) - hold
        while safe > self.sent and text[safe - 1] == "\ufffd":  # a character whose bytes are still coming
            safe -= 1
        if safe > self.sent:
            self.request.emit(Delta(text[self.sent:safe]))
            self.sent = safe
        return False

    def _finish(self, reason: str) -> bool:
        if self.lazy:
            self.text = self.model.decode(self.ids)
        elif len(self.text) > self.sent:
            self.request.emit(Delta(self.text[self.sent:]))
            self.sent = len(self.text)
        self.done = True
        self.request.emit(Finished(version=self.model.version, text=self.text, token_ids=list(self.ids),
                                   finish_reason=reason, prompt_tokens=self.prompt_tokens,
                                   completion_tokens=self.generated, batch_size=self.batch_size,
                                   first_token_at=self.first_token_at or time.perf_counter()))
        return True


# ------------------------------------------------------------------ the engine

CANCELLED_QUEUED, CANCELLED_RUNNING = "queued", "running"  # where a request was when its client went away


class Engine:
    """Holds the served model and runs every batch on one worker thread."""

    def __init__(self, *, max_batch_size: int = 8, batch_wait_ms: float = 5.0,
                 on_batch: Callable[[int], None] | None = None, on_swap: Callable[[str], None] | None = None,
                 on_first_token: Callable[[float], None] | None = None,
                 on_queue: Callable[[int], None] | None = None, max_queued_requests: int = 64,
                 on_cancel: Callable[[str], None] | None = None):
        self.max_batch_size, self.batch_wait = max_batch_size, batch_wait_ms / 1000
        self._on_batch, self._on_swap = on_batch, on_swap
        self._on_first_token, self._on_queue, self._on_cancel = on_first_token, on_queue, on_cancel
        self._queue: WaitingRequests[GenerationRequest] = WaitingRequests(max_queued_requests)
        self._lock = threading.Lock()
        self._pending: list[tuple[LoadedModel, threading.Event]] = []
        self._model: LoadedModel | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -------------------------------------------------- the outside

    @property
    def model(self) -> LoadedModel | None:
        """The model serving now (the worker swaps it only between batches)."""
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
    def max_queued_requests(self) -> int:
        return self._queue.limit

    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sluice-serving-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Finish the running batch, fail what is still queued, and end the worker."""
        self._stopped = True
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._fail_queued(EngineStopped("the server is shutting down"))

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
        """Hand a loaded model to the worker; it serves from the next batch on. Waits until the
        swap happened (the running batch, if any, finishes first); False if ``timeout`` passed."""
        swapped = threading.Event()
        with self._lock:
            self._pending.append((model, swapped))
        self._queue.wake()
        if self._thread is None or not self._thread.is_alive():
            self._swap()  # no worker (not started, or stopped): swap here
        return swapped.wait(timeout)

    # -------------------------------------------------- the worker

    def _report_queue(self) -> None:
        if self._on_queue:
            self._on_queue(len(self._queue))

    def _cancelled(self, where: str) -> None:
        log.debug("request cancelled while %s: its client went away", where)
        if self._on_cancel:
            self._on_cancel(where)

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
            if item is STOP:
                self._swap()
                return
            if item is WAKE:
                self._swap()
                continue
            assert isinstance(item, GenerationRequest)
            batch = self._collect(item)
            self._swap()
            model = self._model
            batch = self._without_cancelled(batch)
            if model is None:
                for request in batch:
                    request.emit(Failed(RuntimeError("no model version is loaded yet")))
            elif batch:
                try:
                    self._generate(model, batch)
                except Exception as error:  # a failed batch fails its requests, never the worker
                    log.exception("generation failed for a batch of %d", len(batch))
                    for request in batch:
                        request.emit(Failed(error))

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
            except Exception as error:
                request.emit(Failed(error))
                continue
            ready.append(request)
        return ready

    def _generate(self, model: LoadedModel, batch: list[GenerationRequest]) -> None:
        import torch

        batch = self._prepare(model, batch)
        if not batch:
            return
        size = len(batch)
        if self._on_batch:
            self._on_batch(size)
        rows = [_Row(request, model, size) for request in batch]
        for row in rows:
            row.request.emit(Started(version=model.version, batch_size=size, prompt_tokens=row.prompt_tokens))
        width = max(row.prompt_tokens for row in rows)
        ids = torch.full((size, width), model.pad_id, dtype=torch.long)
        mask = torch.zeros((size, width), dtype=torch.long)
        for i, row in enumerate(rows):
            prompt = row.request.prompt_ids or []
            ids[i, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[i, width - len(prompt):] = 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: each row counts from its first token
        first_token = True
        with torch.inference_mode():
            out = model.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                              logits_to_keep=1)
            cache, next_position = out.past_key_values, positions[:, -1:] + 1
            active = list(range(size))
            while True:
                tokens = self._choose(out.logits[:, -1, :], [rows[i] for i in active])
                if first_token and self._on_first_token:
                    now = time.perf_counter()
                    for i in active:
                        self._on_first_token(now - rows[i].request.arrived)
                first_token = False
                keep = []
                for j, i in enumerate(active):
                    row = rows[i]
                    if not row.push(int(tokens[j])) and not row.request.cancelled:
                        keep.append(j)
                    elif not row.done:  # its client went away
                        row._finish("cancelled")
                        self._cancelled(CANCELLED_RUNNING)
                if not keep:
                    return
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=ids.device)
                    cache.batch_select_indices(index)
                    mask, next_position, tokens = mask[index], next_position[index], tokens[index]
                    active = [active[j] for j in keep]
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
                out = model.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position,
                                  past_key_values=cache, use_cache=True)
                cache, next_position = out.past_key_values, next_position + 1

    @staticmethod
    def _choose(logits: Any, rows: list[_Row]) -> Any:
        """One token per row: argmax for temperature 0, else nucleus sampling at the row's temperature."""
        import torch

        chosen = logits.argmax(dim=-1)
        for j, row in enumerate(rows):
            request = row.request
            if request.temperature <= 0:
                continue
            scaled = logits[j].float() / request.temperature
            if request.top_p < 1.0:
                ordered, order = torch.sort(scaled, descending=True)
                cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
                drop = cumulative - torch.softmax(ordered, dim=-1) >= request.top_p  # keep the top token always
                scaled = scaled.scatter(0, order[drop], float("-inf"))
            probabilities = torch.softmax(scaled, dim=-1)
            chosen[j] = torch.multinomial(probabilities, 1, generator=row.generator)[0]
        return chosen


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
