"""Answers to the eval set: each row as a chat in the model's own template,
generated in left-padded batches (greedy unless sampling is configured)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from sluice.core.config import EvaluationConfig
from sluice.core.models.chat_templates import stop_token_ids


def eval_prompts(rows: list[dict[str, Any]], settings: EvaluationConfig) -> list[list[dict[str, str]]]:
    """Each eval row as chat messages, contexts placed by the template."""
    system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
    return [system + [{"role": "user", "content": settings.prompt_template.format(
        contexts=settings.context_separator.join(row["contexts"]), question=row["question"])}] for row in rows]


def generate_answers(model_dir: str, prompts: list[list[dict[str, str]]],
                     settings: EvaluationConfig) -> tuple[list[str], dict[str, float]]:
    """Batched generation (left-padded); the answers and timing figures."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"  # generation continues from the right edge of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if device == "cuda" else
                                                 torch.float32).to(device).eval()
    stops = stop_token_ids(tokenizer)  # an answer ends at the template's end of turn, which may not be eos
    sampling = ({"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
                if settings.do_sample else {"do_sample": False})
    answers: list[str] = []
    generated_tokens, latencies, started = 0, [], time.perf_counter()
    for first in tqdm(range(0, len(prompts), settings.batch_size), desc="generating", unit="batch"):
        batch = prompts[first:first + settings.batch_size]
        texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in batch]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        batch_started = time.perf_counter()
        with torch.no_grad():
            output = model.generate(**encoded, max_new_tokens=settings.max_new_tokens,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=stops,
                                    **sampling)
        latencies.append((time.perf_counter() - batch_started) / len(batch))
        new = output[:, encoded["input_ids"].shape[1]:]
        generated_tokens += int((new != tokenizer.pad_token_id).sum())
        answers += [a.strip() for a in tokenizer.batch_decode(new, skip_special_tokens=True)]
    seconds = time.perf_counter() - started
    return answers, {"generation_seconds": seconds, "generated_tokens": generated_tokens,
                     "generation_tokens_per_second": generated_tokens / seconds if seconds else 0.0,
                     "latency_ms_per_sample_p50": 1000 * statistics.median(latencies) if latencies else 0.0}
