"""Typed, layered configuration.

Layers, later ones winning:

1. defaults — the field defaults of the sections (the embedded, no-server setup);
2. an environment file — ``configs/env/<name>.yaml`` (where things run);
3. experiment files — ``configs/experiments/*.yaml`` (what to run);
4. dotted overrides from the command line — ``lakefs.repository=my-data``.

Endpoints and secrets never come from YAML: they are read from the standard
environment variables of each system (``LAKECTL_*``, ``MLFLOW_TRACKING_URI``,
``PREFECT_API_URL``) into :class:`Environment`, whose secrets are
``SecretStr`` so they never reach a log.

Every problem in the merged layers is reported at once, each with the file and
line (or override) it came from, before any task runs.

* :mod:`.sections` — :class:`SluiceConfig` and its sections: every setting,
  its default, its documentation and its checks.
* :mod:`.loading` — :func:`load_config`: the layers resolved, every problem in
  one :class:`ConfigError`; :func:`config_to_yaml` for the way back.
* :mod:`.environment` — :class:`Environment`: endpoints and secrets.
* :mod:`.knobs` — :func:`with_training_knobs`: the run form's plain parameters.
* :mod:`.yaml_lines` — YAML 1.2 floats and the line of every key.

The public names are re-exported here, and callers import them from here
(``from sluice.core.config import SluiceConfig``), whichever module defines them.
"""

from sluice.core.config.environment import Environment
from sluice.core.config.knobs import Method, with_training_knobs
from sluice.core.config.loading import ConfigError, config_to_yaml, env_file_for, load_config, parse_override
from sluice.core.config.sections import (
    BRANCH_NAME,
    EVAL_METRICS,
    REPOSITORY_NAME,
    BridgeConfig,
    CleaningConfig,
    ContractsConfig,
    DataConfig,
    EvaluationConfig,
    JudgeConfig,
    LakeFSConfig,
    LoraConfig,
    PromotionConfig,
    RegistryConfig,
    ServingConfig,
    SluiceConfig,
    TrackingConfig,
    TrainingConfig,
)

__all__ = [
    "BRANCH_NAME",
    "EVAL_METRICS",
    "REPOSITORY_NAME",
    "BridgeConfig",
    "CleaningConfig",
    "ConfigError",
    "ContractsConfig",
    "DataConfig",
    "Environment",
    "EvaluationConfig",
    "JudgeConfig",
    "LakeFSConfig",
    "LoraConfig",
    "Method",
    "PromotionConfig",
    "RegistryConfig",
    "ServingConfig",
    "SluiceConfig",
    "TrackingConfig",
    "TrainingConfig",
    "config_to_yaml",
    "env_file_for",
    "load_config",
    "parse_override",
    "with_training_knobs",
]
