"""What a training run is, before it runs: its job file, its key, its
command. Plain functions, light imports; the training itself happens in
``sluice.core.training.worker``, in a process of its own."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

from pydantic import BaseModel

from sluice.core.config import TrainingConfig
from sluice.core.project import DEPLOYMENTS

# a checkpoint's optimizer state: the Trainer's own file, or DeepSpeed's (``latest`` names its global_stepN/ folder)
OPTIMIZER_STATE_FILES = ("optimizer.pt", "latest")
DATA_KIND = {"sft": "sft", "dpo": "preference"}  # the published data each method trains on


class TrainingJob(BaseModel):
    """Everything the training process needs, as it reads it from JSON."""

    key: str
    base_model: str  # the local folder to load (training.base_model, resolved)
    data_files: list[str]
    output_dir: str
    training: TrainingConfig
    system_prompt: str | None = None


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` a resume can use. The Trainer writes
    ``trainer_state.json`` last, and not atomically, so a kill during a save
    leaves a folder without it, or with half of it, or without the optimizer
    state: such folders are skipped."""
    complete = []
    for path in output_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir() and _readable_state(path / "trainer_state.json") and any(
                (path / name).exists() for name in OPTIMIZER_STATE_FILES):
            complete.append((int(match.group(1)), path))
    return max(complete)[1] if complete else None


def _readable_state(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, ValueError):
        return False


def training_key(data_commit: str, data_files: list[str], training: TrainingConfig, base_fingerprint: str,
                 system_prompt: str | None) -> str:
    """Same data commit, same settings, same base model → same key → the
    existing result is reused. Settings that do not change the result (where
    checkpoints go, how long to wait) are left out."""
    settings = training.model_dump(mode="json", exclude={"output_dir", "timeout_minutes", "logging_steps"})
    canonical = json.dumps({"data_commit": data_commit, "data_files": sorted(data_files), "training": settings,
                            "base": base_fingerprint, "system_prompt": system_prompt}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def accelerate_command(training: TrainingConfig, job_path: Path, use_gpus: bool) -> list[str]:
    """``accelerate launch`` for the training process: one CPU process, N GPU
    processes, or DeepSpeed ZeRO — chosen by config, with no code change."""
    if training.deepspeed:
        config = DEPLOYMENTS / "deepspeed" / f"{training.deepspeed}.yaml"
    elif use_gpus:
        config = DEPLOYMENTS / "accelerate" / "gpus.yaml"
    else:
        config = DEPLOYMENTS / "accelerate" / "cpu.yaml"
    processes = training.num_processes if use_gpus or training.deepspeed else 1
    threads = max(1, (os.cpu_count() or 1) // processes)
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", str(processes), "--num_cpu_threads_per_process", str(threads),
            "-m", "sluice.core.training.worker", str(job_path)]
