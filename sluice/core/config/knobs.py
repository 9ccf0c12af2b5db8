"""The few settings people change from a run form: the base model, the
method, the steps and the learning rate. The ``train`` and ``pipeline`` flows
take them as plain parameters, first in the Prefect UI's form, above the
whole config; a knob left empty keeps the config's value."""

from __future__ import annotations

from typing import Literal

from sluice.core.config.sections import SluiceConfig, TrainingConfig

Method = Literal["sft", "dpo"]


def with_training_knobs(config: SluiceConfig, *, base_model: str | None = None, method: Method | None = None,
                        max_steps: int | None = None, learning_rate: float | None = None) -> SluiceConfig:
    """``config`` with the knobs that were given applied to its training section, checked like the section."""
    given = {"base_model": base_model, "method": method, "max_steps": max_steps, "learning_rate": learning_rate}
    changes = {key: value for key, value in given.items() if value is not None}
    if not changes:
        return config
    training = TrainingConfig.model_validate({**config.training.model_dump(), **changes})
    return config.model_copy(update={"training": training})
