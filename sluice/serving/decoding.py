"""The decode loop's state: the rows generating together, their KV cache, and how rows join and leave.

A :class:`RunningBatch` holds, per row, the prompt and generated tokens in one left-padded KV
cache (``DynamicCache``: tensors ``[rows, heads, positions, dim]`` per layer), an attention mask
over those positions, each row's next position id and the token it feeds next. :meth:`admit`
prefills new requests together (left-padded) and merges them in: the shorter cache is padded on
the left with masked zeros, so every row keeps its own positions (explicit ``position_ids``) and
attends only to its own tokens. :meth:`step` decodes one token for every row. A row that finishes
(end of turn, a stop string, its budget, its client gone) leaves at once: its rows are dropped from
the cache, and leading positions no row uses any more are cut, so the cache never grows past the
longest live row plus its padding.

Rows of one batch may use different LoRA adapters of one PEFT model: every forward gets
``adapter_names`` (PEFT's mixed-adapter batches), ``"__base__"`` for rows without one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.serving.engine import GenerationRequest
    from sluice.serving.loaded_model import LoadedModel

log = logging.getLogger("sluice.serving")
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in adapter_names


class Row:
    """A request inside a running batch: its generated tokens and the text sent so far."""

    def __init__(self, request: GenerationRequest, model: LoadedModel, batch_size: int):
        self.request, self.model, self.batch_size = request, model, batch_size
        self.ids: list[int] = []
        self.generated = 0
        self.sent = 0  # characters of the completion already emitted
        self.text = ""
        self.done = False
        self.first_token_at = 0.0
        self.last_token_at = 0.0
        self.token_gap = 0.0  # seconds between its last two tokens (inter-token latency)
        self.error: Exception | None = None  # its token could not be chosen (see choose_tokens): it alone fails
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
        from sluice.serving.engine import Delta

        self.generated += 1
        now = time.perf_counter()
        self.token_gap, self.last_token_at = now - self.last_token_at, now
        if self.generated == 1:
            self.first_token_at = now
        if token in self.model.eos_ids and not self.request.ignore_eos:
            return self.finish("stop")
        self.ids.append(token)
        full = len(self.ids) >= self.request.max_tokens or \
            self.prompt_tokens + self.generated >= self.model.context_length
        if self.lazy:
            return self.finish("length") if full else False
        text = self.model.decode(self.ids)
        stops = [(text.find(s), s) for s in self.request.stop if s and s in text]
        if stops:
            self.text = text[:min(stops)[0]]
            return self.finish("stop")
        self.text = text
        if full:
            return self.finish("length")
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

    def finish(self, reason: str) -> bool:
        from sluice.serving.engine import Delta, Finished

        if self.lazy:
            self.text = self.model.decode(self.ids)
        elif len(self.text) > self.sent:
            self.request.emit(Delta(self.text[self.sent:]))
            self.sent = len(self.text)
        self.done = True
        self.request.emit(Finished(version=self.model.version, text=self.text, token_ids=list(self.ids),
                                   finish_reason=reason, prompt_tokens=self.prompt_tokens,
                                   completion_tokens=self.generated, batch_size=self.batch_size,
                                   first_token_at=self.first_token_at or time.perf_counter(),
                                   adapter=self.request.adapter))
        return True


def choose_tokens(logits: Any, rows: list[Row]) -> Any:
    """One token per row: argmax for temperature 0, else nucleus sampling at the row's temperature.
    A row short of its ``min_tokens`` cannot choose an end-of-turn token (vLLM's semantics)."""

    early = [j for j, row in enumerate(rows) if row.generated < row.request.min_tokens and row.model.eos_ids]
    if early:
        logits = logits.clone()  # the model's output is an inference tensor: not written in place
        for j in early:
            logits[j, sorted(rows[j].model.eos_ids)] = float("-inf")
    chosen = logits.argmax(dim=-1)
    for j, row in enumerate(rows):
        request = row.request
        if request.temperature <= 0:
            continue
        try:
            chosen[j] = _sample(logits[j], request.temperature, request.top_p, row.generator)
        except RuntimeError as error:  # NaN or inf weights (a broken adapter): this row fails, its batch goes on
            row.error = error
    return chosen


def _sample(logits: Any, temperature: float, top_p: float, generator: Any) -> Any:
    import torch

    scaled = logits.float() / temperature
    if top_p < 1.0:
        ordered, order = torch.sort(scaled, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) >= top_p  # keep the top token always
        scaled = scaled.scatter(0, order[drop], float("-inf"))
    probabilities = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probabilities, 1, generator=generator)[0]


def cache_can_join(cache: Any) -> bool:
    """Rows can join a cache made only of plain full-attention layers (sliding windows and static or
    quantized caches keep their own offsets: those models decode each batch to its end)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def _pad_left(cache: Any, mask: Any, positions: int) -> Any:
    """``positions`` masked zero positions in front of every row (cache and mask)."""
    import torch

    for layer in cache.layers:
        shape = list(layer.keys.shape)
        shape[2] = positions
        layer.keys = torch.cat([layer.keys.new_zeros(shape), layer.keys], dim=2)
        layer.values = torch.cat([layer.values.new_zeros(shape), layer.values], dim=2)
    return torch.cat([mask.new_zeros((mask.shape[0], positions)), mask], dim=-1)


class RunningBatch:
    """The rows decoding together on one model, and their shared KV cache."""

    def __init__(self, model: LoadedModel, *, on_token: Callable[[Row], None],
                 on_cancelled: Callable[[], None]):
        self.model = model
        self.rows: list[Row] = []
        self.joinable = True  # False once the model's cache turns out not to take new rows
        self._on_token, self._on_cancelled = on_token, on_cancelled
        self._cache: Any = None
        self._mask: Any = None
        self._next_position: Any = None
        self._tokens: Any = None  # each row's last chosen token: the next step's input

    def __len__(self) -> int:
        return len(self.rows)

    def admit(self, requests: list[GenerationRequest]) -> None:
        """Prefill ``requests`` together, choose their first tokens and merge the rows that go on."""
        import torch

        from sluice.serving.engine import Started

        size = len(self.rows) + len(requests)
        rows = [Row(request, self.model, size) for request in requests]
        for row in rows:
            row.request.emit(Started(version=self.model.version, batch_size=size, prompt_tokens=row.prompt_tokens))
        width = max(row.prompt_tokens for row in rows)
        ids = torch.full((len(rows), width), self.model.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            prompt = row.request.prompt_ids or []
            ids[i, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[i, width - len(prompt):] = 1
        ids, mask = ids.to(self.model.device), mask.to(self.model.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: each row counts from its first token
        with torch.inference_mode():
            out = self.model.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                                   logits_to_keep=1, **self._adapters(rows))
        tokens = choose_tokens(out.logits[:, -1, :], rows)
        self.joinable = self.joinable and cache_can_join(out.past_key_values)
        keep = self._push(rows, tokens)
        if not keep:
            return
        index = torch.tensor(keep, device=mask.device)
        cache = out.past_key_values
        if len(keep) < len(rows):
            cache.batch_select_indices(index)
        self._merge([rows[j] for j in keep], cache, mask[index], positions[index, -1:] + 1, tokens[index])

    def step(self) -> None:
        """One token for every row; finished rows leave."""
        import torch

        self._mask = torch.cat([self._mask, self._mask.new_ones((len(self.rows), 1))], dim=-1)
        with torch.inference_mode():
            out = self.model.model(input_ids=self._tokens[:, None], attention_mask=self._mask,
                                   position_ids=self._next_position, past_key_values=self._cache, use_cache=True,
                                   **self._adapters(self.rows))
        self._cache, self._next_position = out.past_key_values, self._next_position + 1
        self._tokens = choose_tokens(out.logits[:, -1, :], self.rows)
        keep = self._push(self.rows, self._tokens)
        if len(keep) < len(self.rows):
            self._select(keep)

    def adapters_in_use(self) -> set[str]:
        return {row.request.adapter for row in self.rows if row.request.adapter}

    # -------------------------------------------------- inside

    def _adapters(self, rows: list[Row]) -> dict[str, Any]:
        if not hasattr(self.model.model, "peft_config"):
            return {}
        return {"adapter_names": [row.request.adapter or BASE_ADAPTER for row in rows]}

    def _push(self, rows: list[Row], tokens: Any) -> list[int]:
        """Give each row its token; the indices of the rows that go on."""
        from sluice.serving.engine import Failed

        keep = []
        for j, row in enumerate(rows):
            if row.error is not None:
                log.error("a row failed, its batch goes on: %s", row.error)
                row.done = True
                row.request.emit(Failed(row.error))
                continue
            finished = row.push(int(tokens[j]))
            self._on_token(row)
            if not finished and row.request.cancelled:  # its client went away
                row.finish("cancelled")
                self._on_cancelled()
            if not row.done:
                keep.append(j)
        return keep

    def _merge(self, rows: list[Row], cache: Any, mask: Any, next_position: Any, tokens: Any) -> None:
        import torch

        if not self.rows:
            self.rows, self._cache, self._mask = rows, cache, mask
            self._next_position, self._tokens = next_position, tokens
            return
        ours, theirs = self._mask.shape[1], mask.shape[1]
        if ours < theirs:
            self._mask = _pad_left(self._cache, self._mask, theirs - ours)
        elif theirs < ours:
            mask = _pad_left(cache, mask, ours - theirs)
        for mine, new in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, new.keys], dim=0)
            mine.values = torch.cat([mine.values, new.values], dim=0)
        self._mask = torch.cat([self._mask, mask], dim=0)
        self._next_position = torch.cat([self._next_position, next_position], dim=0)
        self._tokens = torch.cat([self._tokens, tokens], dim=0)
        self.rows = self.rows + rows

    def _select(self, keep: list[int]) -> None:
        import torch

        self.rows = [self.rows[j] for j in keep]
        if not keep:
            self._cache = self._mask = self._next_position = self._tokens = None
            return
        index = torch.tensor(keep, device=self._mask.device)
        self._cache.batch_select_indices(index)
        self._mask, self._next_position, self._tokens = self._mask[index], self._next_position[index], \
            self._tokens[index]
        used = torch.nonzero(self._mask.any(dim=0))
        start = int(used[0]) if len(used) else 0
        if start and self.joinable:  # positions no row attends to any more: cut them
            for layer in self._cache.layers:
                layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
            self._mask = self._mask[:, start:]
