"""Assistant-only masks and stop tokens for real chat-template families
(ChatML as in SmolLM2/Qwen, Llama 3, Mistral), none of which has
``{% generation %}`` markers. The templates are written here from the
families' published formats, on tokenizers trained offline the way the tiny
model's is, with each family's special tokens added."""

from __future__ import annotations

import copy

import pytest

from sluice.core.config import EvaluationConfig
from sluice.core.evaluation.generation import eval_prompts
from sluice.core.models.base_model import ModelError
from sluice.core.models.chat_templates import assistant_masks, check_template, stop_token_ids
from sluice.core.models.tiny_model import corpus, train_tokenizer
from tests.conftest import REPO_ROOT

DEMO_DATA = sorted((REPO_ROOT / "demo" / "data").glob("*.jsonl"))

CHAT = [{"role": "system", "content": "Answer from the context."},
        {"role": "user", "content": "Context: The sluice at Pikemere opens at 07:30.\nQuestion: When does it open?"},
        {"role": "assistant", "content": "At 07:30."},
        {"role": "user", "content": "And when does it close?"},
        {"role": "assistant", "content": "It closes at 19:15."}]
ANSWERS = ["At 07:30.", "It closes at 19:15."]

# SmolLM2/Qwen: a default system turn when the chat has none
CHATML = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
LLAMA3 = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)
# no system role: its text goes before the first user message; no generation prompt either ([/INST] ends the prompt)
MISTRAL = (
    "{{- bos_token -}}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] + '\\n\\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' -}}"
    "{%- else -%}"
    "{{- ' ' + message['content'] + eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

# family: template, bos, eos, other special tokens, the end-of-turn token, what opens an assistant turn,
# and the text an answer is learned as (Mistral puts a space before it, inside the answer's first token)
FAMILIES = {
    "chatml": (CHATML, None, "<|endoftext|>", ["<|im_start|>", "<|im_end|>"], "<|im_end|>",
               "<|im_start|>assistant\n", "{}"),
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|end_of_text|>", ["<|start_header_id|>", "<|end_header_id|>",
                                                                 "<|eot_id|>"], "<|eot_id|>",
               "<|start_header_id|>assistant<|end_header_id|>\n\n", "{}"),
    "mistral": (MISTRAL, "<s>", "</s>", ["[INST]", "[/INST]"], "</s>", " [/INST]", " {}"),
}


@pytest.fixture(scope="module")
def trained_tokenizer():  # type: ignore[no-untyped-def]
    return train_tokenizer(corpus(DEMO_DATA), vocab_size=1024, max_length=512)


def family_tokenizer(trained, family: str):  # type: ignore[no-untyped-def]
    template, bos, eos, others, *_ = FAMILIES[family]
    tokenizer = copy.deepcopy(trained)
    tokenizer.add_special_tokens({"eos_token": eos, **({"bos_token": bos} if bos else {}),
                                  "additional_special_tokens": others})
    tokenizer.chat_template = template
    return tokenizer


def masked_runs(tokenizer, ids: list[int], masks: list[int]) -> list[str]:  # type: ignore[no-untyped-def]
    """The decoded text of each run of consecutive masked tokens."""
    runs: list[list[int]] = []
    for position, (token, mask) in enumerate(zip(ids, masks, strict=True)):
        if mask and (position == 0 or not masks[position - 1]):
            runs.append([])
        if mask:
            runs[-1].append(token)
    return [tokenizer.decode(run) for run in runs]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_masks_cover_the_answers_and_their_end_of_turn_token(trained_tokenizer, family):
    tokenizer = family_tokenizer(trained_tokenizer, family)
    *_, end_of_turn, _, answer = FAMILIES[family]
    ids, masks = assistant_masks(tokenizer, CHAT)
    assert ids == tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]
    assert masked_runs(tokenizer, ids, masks) == [answer.format(a) + end_of_turn for a in ANSWERS]
    check_template(tokenizer, [CHAT, CHAT[1:3]])

    short_ids, short_masks = assistant_masks(tokenizer, CHAT, max_length=len(ids) - 3)
    assert (short_ids, short_masks) == (ids[:len(ids) - 3], masks[:len(ids) - 3])


@pytest.mark.parametrize("family", FAMILIES)
def test_an_eval_prompt_ends_with_the_assistant_header_and_generation_stops_at_the_end_of_turn(
        trained_tokenizer, family):
    tokenizer = family_tokenizer(trained_tokenizer, family)
    *_, end_of_turn, header, _ = FAMILIES[family]
    (messages,) = eval_prompts([{"question": "When does it open?", "contexts": ["It opens at 07:30."]}],
                               EvaluationConfig())
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith(header)
    stops = stop_token_ids(tokenizer)
    assert tokenizer.convert_tokens_to_ids(end_of_turn) in stops
    assert tokenizer.eos_token_id in stops


def test_a_template_that_does_not_preserve_prefixes_is_refused_clearly(trained_tokenizer):
    tokenizer = family_tokenizer(trained_tokenizer, "chatml")
    # the system prompt only once the user asked twice: the first turns render differently alone
    tokenizer.chat_template = (
        "{%- set asked = messages | selectattr('role', 'equalto', 'user') | list | length -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] != 'system' or asked > 1 -%}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )
    check_template(tokenizer, [CHAT[:3]])  # one question: the system prompt is never rendered, consistently
    with pytest.raises(ModelError) as refused:
        check_template(tokenizer, [CHAT[:3], CHAT])
    message = str(refused.value)
    assert "training conversation 1, turn 2 (assistant)" in message
    assert "renders differently from the start of the whole conversation" in message
    assert "training.assistant_only_loss=false" in message
    with pytest.raises(ModelError, match="turn 2 \\(assistant\\)"):
        assistant_masks(tokenizer, CHAT)


def test_a_template_without_an_end_of_turn_token_is_refused(trained_tokenizer):
    tokenizer = family_tokenizer(trained_tokenizer, "chatml")
    tokenizer.chat_template = (
        "{%- for message in messages -%}{{- message['role'] + ': ' + message['content'] + '\\n' -}}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- 'assistant: ' -}}{%- endif -%}"
    )
    with pytest.raises(ModelError, match="turn 2 \\(assistant\\): no end-of-turn token closes this turn"):
        check_template(tokenizer, [CHAT])
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id]  # generation stops where it did before


def test_the_tiny_template_gives_the_masks_its_generation_markers_give():
    # the tiny model's tokenizer, taught that newlines come in runs: an answer that starts with a newline
    # then shares a token with the newline that ends its header
    tokenizer = train_tokenizer([*corpus(DEMO_DATA), *["gate\n\n  open"] * 20], vocab_size=4096, max_length=512)
    spaced = [*CHAT[:4], {"role": "assistant", "content": "\n  It closes at 19:15."}]
    header = tokenizer.apply_chat_template(spaced[:4], add_generation_prompt=True, return_dict=True)["input_ids"]
    assert tokenizer.apply_chat_template(spaced)["input_ids"][:len(header)] != header  # they merge
    for messages in (CHAT, CHAT[:3], CHAT[1:], spaced):
        marked = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
        assert assistant_masks(tokenizer, messages) == (marked["input_ids"], marked["assistant_masks"])
    assert stop_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("<|im_end|>")]  # eos is the end of turn
