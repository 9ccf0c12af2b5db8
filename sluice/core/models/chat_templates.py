"""Chat templates as training and generation need them: which tokens of a
conversation are the assistant's (assistant-only loss), and which token
closes an assistant turn (where generation stops).

transformers marks assistant tokens only in templates with ``{% generation %}``
markers, and TRL 1.16 refuses templates without them for
``assistant_only_loss``. Real templates (ChatML as in SmolLM2/Qwen, Llama 3,
Mistral) have none. So the masks here come from what the template renders:
an assistant turn is what rendering the conversation through that turn adds
to rendering it up to the turn's generation prompt (its header), ending at
the template's end-of-turn token. That holds where the template preserves
prefixes — the start of a conversation renders as the whole conversation
starts — which :func:`check_template` verifies before a training starts.

Plain functions on a tokenizer that is passed in; nothing heavy is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sluice.core.models.base_model import ModelError

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]

# a one-turn chat: what closes its assistant turn is the template's end-of-turn token
PROBE: Messages = [{"role": "user", "content": "Is the gate open?"}, {"role": "assistant", "content": "It is."}]


def assistant_masks(tokenizer: Any, messages: Messages,
                    max_length: int | None = None) -> tuple[list[int], list[int]]:
    """The token ids of the whole chat in the tokenizer's template (no generation prompt) and a 0/1 mask,
    1 on each assistant turn's tokens and its end-of-turn token, 0 on everything else (system and user
    turns, the header that opens an assistant turn); both cut to ``max_length``."""
    ids, spans, problem = _assistant_spans(tokenizer, messages)
    if problem is not None:
        raise ModelError(_with_advice(problem))
    if not spans:
        raise ModelError("a training conversation has no assistant turn, so assistant-only loss has nothing "
                            f"to learn from it: {[m['role'] for m in messages]}")
    masks = [0] * len(ids)
    for start, end in spans:
        masks[start:end] = [1] * (end - start)
    return ids[:max_length], masks[:max_length]


def check_template(tokenizer: Any, sample_conversations: Iterable[Messages]) -> None:
    """Raise a ModelError naming the problem, the first conversation and turn it shows in, and the
    setting to change, when assistant-only masks cannot be computed for the tokenizer's chat template."""
    for number, messages in enumerate(sample_conversations):
        _, _, problem = _assistant_spans(tokenizer, messages)
        if problem is not None:
            raise ModelError(f"training conversation {number}, {_with_advice(problem)}")


def stop_token_ids(tokenizer: Any) -> list[int]:
    """What generation stops on: the eos token and the token the chat template ends an assistant turn with
    (``<|im_end|>``, ``<|eot_id|>``, ``</s>``), which is often not the eos token of a base model."""
    stops = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
    if not tokenizer.chat_template:
        return stops
    ids, spans, problem = _assistant_spans(tokenizer, PROBE)
    if problem is not None:
        # generation still works, as it did before templates were read: it just may run to its token budget
        log.warning("generation stops on the eos token alone: the chat template's end of turn is unclear (%s)",
                    problem)
        return stops
    end_of_turn = ids[spans[0][1] - 1]
    return stops if end_of_turn in stops else [*stops, end_of_turn]


# ------------------------------------------------------------------ the prefix method


def _assistant_spans(tokenizer: Any, messages: Messages) -> tuple[list[int], list[tuple[int, int]], str | None]:
    """The chat's token ids and, for each assistant turn, the [start, end) of its tokens there (after its
    header, through its end-of-turn token); or, as the third item, why the template does not allow that."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = _encode(tokenizer, text)
    special = set(tokenizer.all_special_ids) | {
        i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    spans: list[tuple[int, int]] = []
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        where = f"turn {turn} (assistant)"
        if turn == 0:
            return ids, spans, f"{where}: the conversation opens with the assistant, so no header sets it apart"
        start, problem = _prefix_end(tokenizer, messages[:turn], True, text, ids)
        if problem is not None:
            return ids, spans, f"{where}: the conversation up to this turn's header (generation prompt) {problem}"
        end, problem = _prefix_end(tokenizer, messages[:turn + 1], False, text, ids)
        if problem is not None:
            return ids, spans, f"{where}: the conversation through this turn {problem}"
        if end <= start:
            return ids, spans, f"{where}: the template renders no tokens for this assistant turn"
        closing = [i for i in range(start, end) if ids[i] in special]
        if not closing:
            return ids, spans, (f"{where}: no end-of-turn token closes this turn (it renders as "
                                f"{tokenizer.decode(ids[start:end])!r}), so the model would not learn to stop")
        spans.append((start, closing[-1] + 1))  # what follows the end-of-turn token (a newline) is not learned
    return ids, spans, None


def _prefix_end(tokenizer: Any, prefix: Messages, generation_prompt: bool, text: str,
                ids: list[int]) -> tuple[int, str | None]:
    """How many of the whole chat's tokens the rendering of ``prefix`` covers; or why it is not a prefix.

    The text must be a prefix. Its tokens may still merge with what follows (an answer that starts with a
    space or a newline merges with the newline that ends its header): the prefix then ends before the first
    token that differs, and the merged token goes with the answer, as transformers' generation masks do."""
    head = tokenizer.apply_chat_template(prefix, tokenize=False, add_generation_prompt=generation_prompt)
    if not text.startswith(head):
        at = _common_prefix(head, text)
        return 0, (f"renders differently from the start of the whole conversation (at character {at}: "
                   f"{head[at:at + 40]!r} alone, {text[at:at + 40]!r} in the whole conversation)")
    head_ids = _encode(tokenizer, head)
    return _common_prefix(head_ids, ids), None


def _common_prefix(first: Sequence[Any], second: Sequence[Any]) -> int:
    """How many leading items (characters, tokens) the two have in common."""
    return next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
                min(len(first), len(second)))


def _encode(tokenizer: Any, text: str) -> list[int]:
    # the template writes the special tokens (bos included) itself, as apply_chat_template(tokenize=True) assumes
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _with_advice(problem: str) -> str:
    return (f"{problem}. The assistant's tokens cannot be told apart from the prompt's with this chat template, "
            "so assistant-only loss cannot be used: set training.assistant_only_loss=false to learn from whole "
            "conversations, or train a model whose chat template preserves prefixes")
