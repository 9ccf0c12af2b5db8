"""A tiny base model built offline: a byte-level BPE tokenizer trained on the
bundled text, a chat template, and a small randomly initialised Llama-style
network. Tests and the demo train it; no hub is needed. The same seed and
text give the same files, byte for byte.

The chat template is ChatML-like. Each assistant turn, with its end-of-turn
token, sits inside ``{% generation %}`` so that TRL's ``assistant_only_loss``
learns the answers (and to stop), not the prompts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel

BOS, END, PAD, UNK, START = "<|bos|>", "<|im_end|>", "<|pad|>", "<|unk|>", "<|im_start|>"
SPECIAL_TOKENS = [PAD, UNK, BOS, END, START]  # ids 0..4

CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class TinyModelInfo(BaseModel):
    path: str
    parameters: int
    vocab_size: int
    seconds: float
    files: dict[str, str]  # file name → sha256


def corpus(files: Iterable[Path]) -> Iterator[str]:
    """Every string in JSONL files (chat turns and roles included), in order."""

    def strings(value: object) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    for path in files:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield from strings(json.loads(line))


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))  # byte-level: every byte is known, no unknown tokens
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=END, pad_token=PAD,
                                      unk_token=UNK, additional_special_tokens=[START],
                                      model_max_length=max_length, padding_side="right")
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_tiny_model(
    out_dir: Path,
    corpus_files: Iterable[Path],
    *,
    seed: int = 0,
    vocab_size: int = 4096,
    hidden_size: int = 256,
    layers: int = 4,
    heads: int = 4,
    max_positions: int = 512,
) -> TinyModelInfo:
    """Build the tokenizer and a randomly initialised Llama-style model into
    ``out_dir``; deterministic for a seed and corpus."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    started = time.perf_counter()
    tokenizer = train_tokenizer(corpus(corpus_files), vocab_size, max_positions)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=4 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max_positions, tie_word_embeddings=True, initializer_range=0.02,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out_dir.iterdir()) if p.is_file()}
    return TinyModelInfo(path=str(out_dir), parameters=sum(p.numel() for p in model.parameters()),
                         vocab_size=len(tokenizer), seconds=round(time.perf_counter() - started, 2), files=files)

