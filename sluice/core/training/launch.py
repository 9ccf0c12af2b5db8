"""The training process: launched with ``accelerate launch``, its output
streamed into the log (and a file), stopped at its timeout. A crash or an
out-of-memory kill cannot take down the orchestrator; it becomes a
:class:`~sluice.core.training.results.TrainingError` carrying the trainer's
own message."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

from sluice.core.project import PROJECT_ROOT
from sluice.core.training.job import TrainingJob, accelerate_command, last_complete_checkpoint
from sluice.core.training.results import TrainingError


def stream_output(process: subprocess.Popen[str], log_file: Path, deadline: float,
                  logger: logging.Logger | logging.LoggerAdapter) -> tuple[deque[str], bool]:
    """Relay the training's output to the log (and a file); stop it
    at the deadline. The output's last lines, and whether it timed out."""
    tail: deque[str] = deque(maxlen=60)
    assert process.stdout is not None
    with log_file.open("a") as log:
        for line in process.stdout:
            log.write(line)
            tail.append(line.rstrip())
            if line.startswith(("metrics ", "training finished", "resuming", "starting")) or "Error" in line:
                logger.info(line.rstrip()[:500])
            if time.monotonic() > deadline:
                process.kill()
                break
    process.wait()
    return tail, time.monotonic() > deadline


def launch_training(job: TrainingJob, run_dir: Path, tracking_uri: str, run_id: str, timeout_minutes: float,
                    logger: logging.Logger | logging.LoggerAdapter) -> dict[str, Any]:
    """Run the training process to its end; what it reported in ``result.json``. A failure, a kill or the
    timeout is a :class:`TrainingError` with the process's last output and where a rerun resumes."""
    import torch

    job_path = run_dir / "job.json"
    job_path.write_text(job.model_dump_json(indent=2))
    command = accelerate_command(job.training, job_path, use_gpus=torch.cuda.is_available())
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_RUN_ID": run_id,
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "PYTHONUNBUFFERED": "1"}
    checkpoint = last_complete_checkpoint(run_dir)
    logger.info("training %s (%s)", " ".join(command[2:]),
                f"resuming from {checkpoint.name}" if checkpoint else "from the start")
    (run_dir / "result.json").unlink(missing_ok=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=PROJECT_ROOT)
    tail, timed_out = stream_output(process, run_dir / "training.log", time.monotonic() + timeout_minutes * 60,
                                    logger)
    result_file = run_dir / "result.json"
    if process.returncode != 0 or not result_file.exists():
        last = last_complete_checkpoint(run_dir)
        resume = f"; a rerun resumes from {last.name}" if last else ""
        reason = (f"timed out after {timeout_minutes:g} minutes" if timed_out
                  else "was killed (SIGKILL: out of memory?)" if process.returncode in (-9, 137)
                  else f"failed (exit status {process.returncode})")
        errors = [line for line in tail if "Error" in line or "error" in line]
        raise TrainingError(f"training {reason}{resume}. " + (f"{errors[-1]}\n" if errors else "") +
                            "Last output:\n" + "\n".join(list(tail)[-25:]))
    return json.loads(result_file.read_text())
