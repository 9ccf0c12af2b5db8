"""What many commands share: the options that choose the configuration
(``--env``, ``--config``, dotted overrides) and ``--state-dir``, and resolving
the configuration from them (any problem: every one listed, exit status 2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where the local stack keeps its data, logs and pids.")]

ConfigFiles = Annotated[
    Optional[list[Path]],
    typer.Option("--config", "-c", help="Experiment YAML file(s), applied in order after the environment file."),
]
EnvName = Annotated[
    Optional[str],
    typer.Option("--env", help="Environment file configs/env/<name>.yaml (default: $SLUICE_ENV, else none)."),
]
Overrides = Annotated[
    Optional[list[str]],
    typer.Argument(help="Dotted overrides applied last, e.g. lakefs.repository=my-data"),
]


def resolve_config(env: str | None, files: list[Path] | None, overrides: list[str] | None):
    """The environment file, then the --config files, then the overrides; a problem ends the command."""
    from sluice.core.config import ConfigError, env_file_for, load_config

    layers = [p for p in [env_file_for(env)] if p is not None] + list(files or [])
    try:
        return load_config(layers, overrides or [])
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def config_for_flows(env: str | None, files: list[Path] | None, overrides: list[str] | None):  # type: ignore[no-untyped-def]
    """The resolved config, before a flow runs in Prefect's ephemeral mode (no analytics calls)."""
    resolved = resolve_config(env, files, overrides)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return resolved
