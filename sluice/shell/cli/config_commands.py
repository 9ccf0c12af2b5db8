"""``sluice config show`` and ``sluice config check``: the layered configuration,
resolved or checked file by file. Registered in :mod:`.root`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sluice.shell.cli.options import ConfigFiles, EnvName, Overrides, resolve_config


def config_show(env: EnvName = None, config: ConfigFiles = None, overrides: Overrides = None) -> None:
    """Print the resolved configuration as YAML (secrets are never part of it)."""
    from sluice.core.config import config_to_yaml

    typer.echo(config_to_yaml(resolve_config(env, config, overrides)), nl=False)


def config_check(files: Annotated[list[Path], typer.Argument(help="YAML files to check, each on its own.")]) -> None:
    """Check config files; every problem is listed with file and line."""
    from sluice.core.config import ConfigError, load_config

    failed = False
    for path in files:
        try:
            load_config([path])
            typer.echo(f"ok   {path}")
        except ConfigError as exc:
            failed = True
            typer.echo(f"FAIL {path}\n{exc}", err=True)
    raise typer.Exit(1 if failed else 0)
