"""What a training is before it runs: its key, its checkpoints, its launch
command, the tiny base model, and the training report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from sluice.core.config import SluiceConfig, TrainingConfig
from sluice.core.models.base_model import base_model_fingerprint
from sluice.core.training.job import accelerate_command, last_complete_checkpoint, training_key
from tests.conftest import REPO_ROOT

DEMO_DATA = sorted((REPO_ROOT / "demo" / "data").glob("*.jsonl"))


# ------------------------------------------------------------------ the key


def _key(training: TrainingConfig | None = None, commit: str = "c1", base: str = "sha256:b",
         files: tuple[str, ...] = ("datasets/sft/clean/a.parquet",), system: str | None = None) -> str:
    return training_key(commit, list(files), training or TrainingConfig(), base, system)


def test_the_key_changes_with_what_changes_the_result():
    key = _key()
    assert _key() == key
    assert _key(commit="c2") != key
    assert _key(base="sha256:other") != key
    assert _key(files=("datasets/sft/clean/a.parquet", "datasets/sft/clean/b.parquet")) != key
    assert _key(TrainingConfig(learning_rate=1e-3)) != key
    assert _key(TrainingConfig(lora={"r": 8})) != key  # type: ignore[arg-type]
    assert _key(system="Be brief.") != key


def test_the_key_ignores_where_and_how_long():
    key = _key()
    assert _key(TrainingConfig(output_dir=Path("/elsewhere"), timeout_minutes=5, logging_steps=1)) == key
    two = ("datasets/sft/clean/a.parquet", "datasets/sft/clean/b.parquet")
    assert _key(files=two) == _key(files=two[::-1])  # the order files were listed in


def test_inconsistent_training_settings_are_refused():
    with pytest.raises(ValidationError, match="dpo with finetune: full"):
        TrainingConfig(method="dpo", finetune="full")
    with pytest.raises(ValidationError, match="max_steps: 0"):
        TrainingConfig(max_steps=0)


# ------------------------------------------------------------------ checkpoints


def _checkpoint(root: Path, step: int, files: tuple[str, ...] = ("trainer_state.json", "optimizer.pt",
                                                                  "scheduler.pt")) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text(json.dumps({"global_step": step}) if name == "trainer_state.json" else "x")
    return folder


def test_the_newest_complete_checkpoint_is_resumed(tmp_path):
    assert last_complete_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 4)
    ten = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 8)
    (tmp_path / "checkpoint-x").mkdir()
    assert last_complete_checkpoint(tmp_path) == ten


def test_a_half_written_checkpoint_is_skipped(tmp_path):
    four = _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 12, files=("optimizer.pt", "scheduler.pt"))  # killed before trainer_state.json
    torn = _checkpoint(tmp_path, 16)
    (torn / "trainer_state.json").write_text('{"global_step": 1')  # killed while writing it
    _checkpoint(tmp_path, 20, files=("trainer_state.json",))  # no optimizer state
    assert last_complete_checkpoint(tmp_path) == four


def test_a_deepspeed_checkpoint_is_complete_with_its_own_optimizer_state(tmp_path):
    zero = _checkpoint(tmp_path, 8, files=("trainer_state.json", "latest"))  # latest → global_step8/
    assert last_complete_checkpoint(tmp_path) == zero


# ------------------------------------------------------------------ the base model


def test_a_local_base_model_is_fingerprinted_by_its_contents(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 100)
    first = base_model_fingerprint(str(tmp_path))
    assert first == base_model_fingerprint(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 99 + b"\1")
    assert base_model_fingerprint(str(tmp_path)) != first
    assert base_model_fingerprint("Qwen/Qwen2.5-0.5B") == "hub:Qwen/Qwen2.5-0.5B"


def test_the_tiny_model_is_deterministic_for_a_seed(tmp_path):
    from sluice.core.models.tiny_model import build_tiny_model

    first = build_tiny_model(tmp_path / "a", DEMO_DATA, seed=3, hidden_size=64, layers=1)
    again = build_tiny_model(tmp_path / "b", DEMO_DATA, seed=3, hidden_size=64, layers=1)
    other = build_tiny_model(tmp_path / "c", DEMO_DATA, seed=4, hidden_size=64, layers=1)
    assert first.files == again.files
    assert first.files["model.safetensors"] != other.files["model.safetensors"]
    assert first.files["tokenizer.json"] == other.files["tokenizer.json"]  # the seed is for the weights


def test_the_tiny_chat_template_marks_only_assistant_turns_for_the_loss(tmp_path):
    from transformers import AutoTokenizer

    from sluice.core.models.tiny_model import build_tiny_model

    build_tiny_model(tmp_path, DEMO_DATA, hidden_size=64, layers=1)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    chat = [{"role": "system", "content": "Answer from the context."},
            {"role": "user", "content": "When does the gate open?"},
            {"role": "assistant", "content": "At 07:30."}]
    encoded = tokenizer.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)
    learned = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(learned) == "At 07:30.<|im_end|>"  # the answer and its stop token, nothing else
    assert tokenizer.decode(tokenizer.encode("gate 07:30 ünïcode ✓")) == "gate 07:30 ünïcode ✓"  # byte-level


def test_init_tiny_from_the_shell(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sluice.shell.cli", "model", "init-tiny", str(tmp_path / "m"),
                          "--hidden-size", "64", "--layers", "1"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert "parameters" in out.stdout
    assert json.loads((tmp_path / "m" / "config.json").read_text())["num_hidden_layers"] == 1


# ------------------------------------------------------------------ the launch


def test_cpu_training_is_one_accelerate_process(tmp_path):
    command = accelerate_command(TrainingConfig(num_processes=4), tmp_path / "job.json", use_gpus=False)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--config_file") + 1].endswith("deployments/accelerate/cpu.yaml")
    assert command[command.index("--num_processes") + 1] == "1"
    assert command[-3:] == ["-m", "sluice.core.training.worker", str(tmp_path / "job.json")]


def test_gpus_and_deepspeed_come_from_config(tmp_path):
    gpus = accelerate_command(TrainingConfig(num_processes=4), tmp_path / "job.json", use_gpus=True)
    assert gpus[gpus.index("--config_file") + 1].endswith("deployments/accelerate/gpus.yaml")
    assert gpus[gpus.index("--num_processes") + 1] == "4"
    zero3 = accelerate_command(TrainingConfig(num_processes=8, deepspeed="zero3"), tmp_path / "job.json",
                               use_gpus=True)
    assert zero3[zero3.index("--config_file") + 1].endswith("deployments/deepspeed/zero3.yaml")
    assert zero3[zero3.index("--num_processes") + 1] == "8"


# ------------------------------------------------------------------ the report


def test_the_report_lists_only_settings_that_differ_from_the_defaults():
    from sluice.core.training.report import config_changes

    config = SluiceConfig(training=TrainingConfig(learning_rate=1e-3, lora={"r": 4}))  # type: ignore[arg-type]
    changes = {key: (default, value) for key, default, value in config_changes(config)}
    assert changes == {"training.learning_rate": ("0.0002", "0.001"), "training.lora.r": ("16", "4")}
    assert config_changes(SluiceConfig()) == []


# ------------------------------------------------------------------ assistant-only loss


@pytest.fixture(scope="module")
def small_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sluice.core.models.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(out, DEMO_DATA, hidden_size=64, layers=1)
    return out


def _chats(count: int = 7):  # type: ignore[no-untyped-def]
    """A few demo chats (system, user, assistant) and one with a second exchange."""
    from datasets import Dataset

    rows = (json.loads(line) for line in (REPO_ROOT / "demo" / "data" / "sft.jsonl").read_text().splitlines())
    chats = [row["messages"] for row in rows if "messages" in row][:count]
    chats.append(chats[0] + [{"role": "user", "content": "And who keeps it?"},
                             {"role": "assistant", "content": "Its keeper is Wren Marlowe."}])
    return Dataset.from_dict({"messages": chats})


def _sft_trainer(model_dir: Path, tokenizer, rows, output: Path, **settings):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    from sluice.core.training.worker import _trainer

    training = TrainingConfig(max_steps=2, batch_size=4, max_length=128, logging_steps=1, save_steps=100,
                              **settings)
    job = {"output_dir": str(output), "training": training.model_dump(mode="json")}
    return _trainer(job, AutoModelForCausalLM.from_pretrained(model_dir), tokenizer, rows, [])


def _learned_runs(tokenizer, dataset) -> list[str]:  # type: ignore[no-untyped-def]
    """The decoded text of each run of tokens with a label, example by example."""
    runs: list[str] = []
    for example in dataset:
        labels, run = example["labels"], []
        assert all(label in (-100, token) for label, token in zip(labels, example["input_ids"], strict=True))
        for label in [*labels, -100]:
            if label != -100:
                run.append(label)
            elif run:
                runs.append(tokenizer.decode(run))
                run = []
    return runs


@pytest.mark.parametrize("packing", [False, True])
def test_assistant_only_loss_learns_only_the_answers_with_a_template_without_generation_markers(
        small_tiny_model, tmp_path, packing):
    import math

    from transformers import AutoTokenizer

    from sluice.core.models.tiny_model import CHAT_TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(small_tiny_model)
    tokenizer.chat_template = CHAT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    assert "generation %}" not in tokenizer.chat_template  # plain ChatML, as SmolLM2 and Qwen ship it
    rows = _chats()
    trainer = _sft_trainer(small_tiny_model, tokenizer, rows, tmp_path, packing=packing)
    answers = [m["content"] + "<|im_end|>" for chat in rows["messages"] for m in chat if m["role"] == "assistant"]
    learned = _learned_runs(tokenizer, trainer.train_dataset)
    assert (sorted(learned) if packing else learned) == (sorted(answers) if packing else answers)
    outcome = trainer.train()
    assert trainer.state.global_step == 2 and math.isfinite(outcome.training_loss)


def test_the_tiny_template_trains_on_the_tokens_trl_chose_from_its_generation_markers(small_tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(small_tiny_model)
    rows = _chats()
    ours = _sft_trainer(small_tiny_model, tokenizer, rows, tmp_path / "ours").train_dataset
    args = SFTConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, report_to=[], max_length=128,
                     assistant_only_loss=True)  # TRL masking by the template's {% generation %} markers
    trl = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(small_tiny_model), args=args, train_dataset=rows,
                     processing_class=tokenizer).train_dataset
    assert ours["input_ids"] == trl["input_ids"]
    assert ours["labels"] == trl["labels"]
