"""A deliberately bad challenger for the canary tests: a LoRA adapter over the tiny base trained to end its
turn at once, so every answer it gives is empty (an honest failure, the way a broken fine-tune fails)."""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def demo_questions(count: int, offset: int = 0) -> list[list[dict[str, str]]]:
    """Chat prompts (system + user) from the demo SFT data."""
    rows = [json.loads(line) for line in (REPO_ROOT / "demo" / "data" / "sft.jsonl").read_text().splitlines()]
    chats = [[{"role": m["role"], "content": m["content"]} for m in row["messages"] if m["role"] != "assistant"]
             for row in rows if "messages" in row]
    return chats[offset:offset + count]


def build_silent_adapter(base_dir: Path, out_dir: Path) -> Path:
    """A rank-1 LoRA adapter on the output layer that adds a large end-of-turn logit wherever the last hidden
    state points the way it does after the demo prompts' generation prompt (their mean direction), so the
    first token is the end of the turn and every answer is empty; ``out_dir/adapter`` holds it with the
    tokenizer, as tests/serving/lora_fixtures.build_adapter does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    prompts = [tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
               for chat in demo_questions(16)]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    with torch.no_grad():
        last = model(**batch, output_hidden_states=True).hidden_states[-1][:, -1, :]  # what the output layer sees
    direction = last.mean(0)
    peft_model = get_peft_model(model, LoraConfig(r=1, lora_alpha=1, target_modules=["lm_head"],
                                                  task_type="CAUSAL_LM"))
    lora = peft_model.base_model.model.lm_head
    with torch.no_grad():
        lora.lora_A["default"].weight.copy_(direction[None, :] / direction.dot(direction))  # 1 along the mean
        lora.lora_B["default"].weight.zero_()
        lora.lora_B["default"].weight[tokenizer.convert_tokens_to_ids("<|im_end|>"), 0] = 1000.0
    peft_model.save_pretrained(out_dir / "adapter")
    tokenizer.save_pretrained(out_dir / "adapter")
    return out_dir
