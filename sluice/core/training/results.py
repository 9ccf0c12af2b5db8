"""What a training produces, and how it fails."""

from __future__ import annotations

from pydantic import BaseModel

from sluice.core.errors import ExplainedError


class TrainingError(ExplainedError, RuntimeError):
    """The training could not run or failed; the message holds the trainer's own last output."""


class TrainingResult(BaseModel):
    key: str
    run_id: str
    experiment_id: str
    tracking_uri: str
    reused: bool  # a finished run with this key existed: nothing was trained
    data_commit: str
    global_step: int
    resumed_from_step: int
    train_loss: float | None
    train_seconds: float
    tokens_per_second: float | None
    merged_model_uri: str  # runs:/<run>/model
    adapter_uri: str | None
    config_hash: str = ""  # of the resolved training settings
