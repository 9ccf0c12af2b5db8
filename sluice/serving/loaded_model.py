"""One registry version of the served model, loaded: the model, its tokenizer, and what generation
needs to know about them (device, context length, the tokens that end a completion)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class LoadedModel:
    """One registry version, loaded: model, tokenizer and what generation needs to know."""

    version: str
    path: Path
    model: Any
    tokenizer: Any
    device: str
    context_length: int
    eos_ids: frozenset[int]  # what ends a completion: eos, and the chat template's end-of-turn token
    pad_id: int

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_text(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])

    def encode(self, prompt: list[dict[str, str]] | str) -> list[int]:
        return self.encode_text(prompt) if isinstance(prompt, str) else self.encode_chat(prompt)

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))


def load_model(version: str, path: Path, device: str | None = None) -> LoadedModel:
    """Load a Hugging Face folder (tokenizer with a chat template) for generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sluice.core.models.chat_templates import stop_token_ids

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.bfloat16 if device == "cuda" else torch.float32).to(device).eval()
    eos: set[int] = set()
    for source in (model.generation_config.eos_token_id, stop_token_ids(tokenizer)):
        if isinstance(source, int):
            eos.add(source)
        elif source:
            eos.update(int(i) for i in source)
    context = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
    return LoadedModel(version=version, path=Path(path), model=model, tokenizer=tokenizer, device=device,
                       context_length=int(min(context, 1 << 20)), eos_ids=frozenset(eos),
                       pad_id=int(tokenizer.pad_token_id))
