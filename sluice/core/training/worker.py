"""The training process: ``accelerate launch -m sluice.core.training.worker JOB.json``.

It runs apart from the orchestrator, so a crash or an out-of-memory kill
cannot take the flow down, and the same job runs on one CPU process or N GPUs
(DeepSpeed included) through accelerate's config alone. It:

1. loads the base model and the training rows (local Parquet files, already
   downloaded at an exact lakeFS commit);
2. trains with TRL — SFT (LoRA, full or QLoRA; assistant-only loss with
   any chat template; packing) or DPO (LoRA; the adapter-disabled base is
   the reference);
3. writes a checkpoint every ``save_steps`` and, when run again with the
   same job, resumes from the last complete one;
4. streams metrics to the MLflow run the orchestrator opened (``log_batch``;
   it never starts or ends that run);
5. saves the adapter and the merged model with its tokenizer, reloads the
   merged model and checks that it generates exactly what it generated
   before saving; and writes ``result.json``.

Any error ends the process with a traceback and a non-zero status, which the
orchestrator turns into the flow's error.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402 (after the offline switches)
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402

from sluice.core.models.chat_templates import assistant_masks, stop_token_ids  # noqa: E402
from sluice.core.training.job import last_complete_checkpoint  # noqa: E402

VERIFY_PROMPTS = 3
SYSTEM_METRICS_SECONDS = 5


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class MetricsToMLflow(TrainerCallback):
    """Every log line goes to the MLflow run, with tokens/s and peak memory
    added. Only the main process logs."""

    def __init__(self, tracking_uri: str | None, run_id: str | None):
        self.run_id = run_id
        self.client = None
        if tracking_uri and run_id:
            from mlflow import MlflowClient

            self.client = MlflowClient(tracking_uri)
        self.last_time = time.perf_counter()
        self.last_step = 0
        self.last_tokens = 0.0
        self.history: list[dict[str, float]] = []
        self.tokens_at_start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.last_time, self.last_step = time.perf_counter(), state.global_step
        self.last_tokens = float(getattr(state, "num_input_tokens_seen", 0) or 0)
        self.tokens_at_start = self.last_tokens
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        metrics = {k.replace("/", "."): float(v) for k, v in logs.items()
                   if isinstance(v, int | float) and math.isfinite(v)}
        steps, seconds = state.global_step - self.last_step, now - self.last_time
        tokens = float(getattr(state, "num_input_tokens_seen", 0) or 0)
        if steps > 0 and seconds > 0:
            metrics["step_seconds"] = seconds / steps
            if tokens >= self.last_tokens:
                metrics["tokens_per_second"] = (tokens - self.last_tokens) / seconds
        metrics["peak_rss_mb"] = _peak_rss_mb()
        if torch.cuda.is_available():
            metrics["cuda_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        self.last_time, self.last_step, self.last_tokens = now, state.global_step, tokens
        self.history.append({"step": float(state.global_step), **metrics})
        print("metrics", state.global_step, json.dumps(metrics), flush=True)
        if self.client is not None:
            from mlflow.entities import Metric

            stamp = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, stamp, state.global_step)
                                                        for k, v in metrics.items()])


def _system_metrics(tracking_uri: str | None, run_id: str | None):  # type: ignore[no-untyped-def]
    """MLflow's CPU/memory/disk/GPU sampler, logging into the run as ``system/*``."""
    if not (tracking_uri and run_id):
        return None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_SECONDS, resume_logging=True,
                                   tracking_uri=tracking_uri)
    monitor.start()
    return monitor


def _precision(setting: str) -> dict[str, bool]:
    if setting == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return {"bf16": True, "fp16": False}
        return {"bf16": False, "fp16": False}  # fp32 on CPU
    return {"bf16": setting == "bf16", "fp16": setting == "fp16"}


def _load_rows(files: list[str], method: str, system_prompt: str | None):  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    if method == "sft":
        table = pa.concat_tables(pq.read_table(f, columns=["messages"]) for f in files)
        return Dataset.from_dict({"messages": table["messages"].to_pylist()})
    # file by file: batches checked by preference contract 1.x hold the prompt as text, later ones as a chat,
    # and one main can hold both
    rows = [row for f in files for row in pq.read_table(f, columns=["prompt", "chosen", "rejected"]).to_pylist()]
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompts = [[{"role": "user", "content": r["prompt"]}] if isinstance(r["prompt"], str) else r["prompt"]
               for r in rows]
    # the configured system prompt joins only a prompt without a system turn of its own
    prompts = [turns if any(t["role"] == "system" for t in turns) else system + turns for turns in prompts]
    return Dataset.from_dict({
        "prompt": prompts,
        "chosen": [[{"role": "assistant", "content": r["chosen"]}] for r in rows],
        "rejected": [[{"role": "assistant", "content": r["rejected"]}] for r in rows],
    })


def _load_model(base: str, finetune: str, precision: dict[str, bool]):  # type: ignore[no-untyped-def]
    if finetune == "qlora":
        if not torch.cuda.is_available():
            raise RuntimeError("finetune: qlora needs a CUDA GPU (and bitsandbytes); use lora on CPU")
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_compute_dtype=torch.bfloat16)
        return AutoModelForCausalLM.from_pretrained(base, quantization_config=quantization)
    dtype = torch.bfloat16 if precision["bf16"] else torch.float16 if precision["fp16"] else torch.float32
    return AutoModelForCausalLM.from_pretrained(base, dtype=dtype)


def _training_args(job: dict[str, Any], precision: dict[str, bool]) -> dict[str, Any]:
    """Arguments SFTConfig and DPOConfig share."""
    t = job["training"]
    return dict(
        output_dir=job["output_dir"], use_cpu=not torch.cuda.is_available(), **precision,
        per_device_train_batch_size=t["batch_size"], gradient_accumulation_steps=t["gradient_accumulation_steps"],
        # transformers 5: warmup_steps in [0, 1) is a ratio of all steps (warmup_ratio is gone)
        learning_rate=t["learning_rate"], warmup_steps=t["warmup_ratio"], lr_scheduler_type="cosine",
        num_train_epochs=t["epochs"], max_steps=t["max_steps"], seed=t["seed"], data_seed=t["seed"],
        logging_steps=t["logging_steps"], logging_first_step=True, save_strategy="steps",
        save_steps=t["save_steps"], save_total_limit=t["save_total_limit"], report_to=[],
        activation_checkpointing=t["gradient_checkpointing"], dataloader_pin_memory=False,
        include_num_input_tokens_seen="non_padding", disable_tqdm=True, max_length=t["max_length"],
    )


def _lora(job: dict[str, Any]):  # type: ignore[no-untyped-def]
    from peft import LoraConfig

    settings = job["training"]["lora"]
    return LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                      target_modules=settings["target_modules"], task_type="CAUSAL_LM")


def _with_assistant_masks(rows, tokenizer, max_length: int):  # type: ignore[no-untyped-def]
    """The chats tokenized, with the mask of the assistant's tokens that TRL turns into labels (-100 elsewhere)
    before it truncates or packs; computed here because TRL masks only templates with generation markers."""
    from datasets import Dataset

    columns: dict[str, list[list[int]]] = {"input_ids": [], "assistant_masks": []}
    for messages in rows["messages"]:
        ids, masks = assistant_masks(tokenizer, messages, max_length)
        columns["input_ids"].append(ids)
        columns["assistant_masks"].append(masks)
    return Dataset.from_dict(columns)


def _trainer(job: dict[str, Any], model, tokenizer, rows, callbacks):  # type: ignore[no-untyped-def]
    t = job["training"]
    precision = _precision(t["precision"])
    peft_config = None if t["finetune"] == "full" else _lora(job)
    if t["method"] == "sft":
        from trl import SFTConfig, SFTTrainer

        # assistant-only loss comes from the assistant_masks column; TRL's own would refuse most real templates
        train = _with_assistant_masks(rows, tokenizer, t["max_length"]) if t["assistant_only_loss"] else rows
        args = SFTConfig(**_training_args(job, precision), packing=t["packing"], assistant_only_loss=False)
        return SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                          peft_config=peft_config, callbacks=callbacks)
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**_training_args(job, precision), beta=t["dpo_beta"])
    return DPOTrainer(model=model, ref_model=None, args=args, train_dataset=rows, processing_class=tokenizer,
                      peft_config=peft_config, callbacks=callbacks)


def verification_prompts(rows, method: str, count: int = VERIFY_PROMPTS) -> list[list[dict[str, str]]]:  # type: ignore[no-untyped-def]
    """A few training prompts without their answers, to generate from: an SFT chat up to its first answer, a
    preference prompt as it is (earlier assistant turns included: it is the conversation before the answer)."""
    prompts = []
    for row in rows.select(range(min(count, len(rows)))):
        if method == "sft":
            first_answer = next((i for i, m in enumerate(row["messages"]) if m["role"] == "assistant"),
                                len(row["messages"]))
            prompts.append(row["messages"][:first_answer])
        else:
            prompts.append(row["prompt"])
    return prompts


def greedy_ids(model, tokenizer, prompts: list[list[dict[str, str]]], max_new_tokens: int = 24) -> list[list[int]]:  # type: ignore[no-untyped-def]
    outputs = []
    model.eval()
    stops = stop_token_ids(tokenizer)  # the template's end of turn, not only eos
    for messages in prompts:
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)
        encoded = {k: v.to(model.device) for k, v in encoded.items()}
        with torch.no_grad():
            generated = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=stops)
        outputs.append(generated[0, encoded["input_ids"].shape[1]:].tolist())
    return outputs


def save_and_verify(trainer, tokenizer, rows, job: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Save the adapter (if any) and the merged model; reload the merged one
    and compare its greedy generations with the in-memory model's."""
    output = Path(job["output_dir"])
    adapter_dir, merged_dir = output / "adapter", output / "merged"
    model = trainer.model
    if job["training"]["finetune"] != "full":
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        model = model.merge_and_unload()
    model = model.to(torch.float32) if not torch.cuda.is_available() else model
    model.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    prompts = verification_prompts(rows, job["training"]["method"])
    before = greedy_ids(model, tokenizer, prompts)
    reloaded = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=model.dtype).to(model.device)
    after = greedy_ids(reloaded, tokenizer, prompts)
    if before != after:
        raise RuntimeError(f"the saved model does not reproduce the trained model: {before} != {after}")
    return {"adapter_dir": str(adapter_dir) if adapter_dir.exists() else None, "merged_dir": str(merged_dir),
            "verified_prompts": len(prompts), "sample_generation": tokenizer.decode(after[0]) if after else ""}


def main(job_path: Path) -> None:
    import psutil

    process_started = psutil.Process().create_time()
    job = json.loads(job_path.read_text())
    t = job["training"]
    torch.manual_seed(t["seed"])
    output = Path(job["output_dir"])
    output.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(job["base_model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = _load_rows(job["data_files"], t["method"], job.get("system_prompt"))
    model = _load_model(job["base_model"], t["finetune"], _precision(t["precision"]))
    tracking_uri, run_id = os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_RUN_ID")
    streamer = MetricsToMLflow(tracking_uri, run_id)
    trainer = _trainer(job, model, tokenizer, rows, [streamer])
    resume = last_complete_checkpoint(output)
    print(f"resuming from {resume}" if resume else "starting from the base model", flush=True)
    system_metrics = _system_metrics(tracking_uri, run_id) if trainer.is_world_process_zero() else None
    started = time.perf_counter()
    try:
        outcome = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        if system_metrics is not None:
            system_metrics.finish()
    seconds = time.perf_counter() - started
    startup_seconds = time.time() - seconds - process_started  # imports, loading, tokenizing
    if not trainer.is_world_process_zero():
        return
    saving = time.perf_counter()
    saved = save_and_verify(trainer, tokenizer, rows, job)
    save_seconds = time.perf_counter() - saving
    state = trainer.state
    tokens = float(getattr(state, "num_input_tokens_seen", 0) or 0)
    result = {
        "global_step": state.global_step, "resumed_from_step": int(resume.name.split("-")[1]) if resume else 0,
        "train_loss": outcome.training_loss, "train_seconds": round(seconds, 3), "examples": len(rows),
        "startup_seconds": round(startup_seconds, 3), "save_seconds": round(save_seconds, 3),
        "tokens_seen": tokens, "peak_rss_mb": _peak_rss_mb(),
        "final_metrics": streamer.history[-1] if streamer.history else {},
        # tokens this process trained on (after a resume: since the resume) per second of training
        "tokens_per_second": (tokens - streamer.tokens_at_start) / seconds if seconds > 0 else None, **saved,
    }
    partial = output / "result.json.partial"
    partial.write_text(json.dumps(result, indent=2))
    os.replace(partial, output / "result.json")
    print("training finished:", json.dumps({k: result[k] for k in ("global_step", "train_loss")}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
