"""The baseline for benchmarks/train_throughput.py: SFT with TRL and nothing
else — no Prefect, no MLflow, no lakeFS, no accelerate launcher — on the same
model, Parquet rows and settings the flow's training process uses.

    python benchmarks/plain_trl_sft.py MODEL_DIR ROWS.parquet OUT_DIR --steps 60 [--lora]

Prints one JSON line: train_seconds (around ``trainer.train()``), tokens
(non-padding input tokens trained on), startup_seconds (process start to the
first step: imports, loading, tokenizing) and peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import psutil  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("rows")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--full-sequence-loss", action="store_true",
                        help="loss on every token (TRL refuses assistant-only loss on templates without markers)")
    args = parser.parse_args()

    torch.manual_seed(42)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    rows = Dataset.from_dict({"messages": pq.read_table(args.rows)["messages"].to_pylist()})
    cuda = torch.cuda.is_available()  # the GPU check (benchmarks/gpu_check.sh) runs this script on a GPU
    bf16 = cuda and torch.cuda.is_bf16_supported()
    model = model.to(torch.bfloat16) if bf16 else model
    config = SFTConfig(output_dir=args.out, use_cpu=not cuda, bf16=bf16, fp16=False, max_steps=args.steps,
                       per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate,
                       warmup_steps=0.05, lr_scheduler_type="cosine", max_length=args.max_length,
                       assistant_only_loss=not args.full_sequence_loss, packing=False, activation_checkpointing=False,
                       seed=42, data_seed=42, logging_steps=10, save_strategy="no", report_to=[],
                       dataloader_pin_memory=False, include_num_input_tokens_seen="non_padding", disable_tqdm=True)
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"]) if args.lora else None
    trainer = SFTTrainer(model=model, args=config, train_dataset=rows, processing_class=tokenizer,
                         peft_config=peft_config)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    startup = time.time() - seconds - psutil.Process().create_time()
    print(json.dumps({"train_seconds": seconds, "tokens": float(trainer.state.num_input_tokens_seen),
                      "steps": trainer.state.global_step, "startup_seconds": startup,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
