"""What many commands share: the options that choose the configuration
(``--env``, ``--config``, dotted overrides), ``--state-dir`` and ``--debug``;
resolving the configuration from them (any problem: every one listed, exit
status 2); and running a flow so that an explained failure shows as its
message alone (exit status 1), its traceback kept in the log."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

LOG_FILE = Path(".sluice/logs/sluice.log")
DEFAULT_STACK_DIR = Path(".sluice/stack")
StateDir = Annotated[Path, typer.Option("--state-dir", help="Where the local stack keeps its data, logs and pids.")]

ConfigFiles = Annotated[
    Optional[list[Path]],
    typer.Option("--config", "-c", help="Experiment YAML file(s), applied in order after the environment file."),
]
EnvName = Annotated[
    Optional[str],
    typer.Option("--env", help="Environment file configs/env/<name>.yaml (default: $SLUICE_ENV, else none)."),
]
Debug = Annotated[bool, typer.Option("--debug", help=f"Also show tracebacks (they always go to {LOG_FILE}).")]
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
    """The resolved config, before a flow runs: on the local stack's servers when `sluice up` is running (no
    temporary Prefect server, no embedded lakeFS to start), else in Prefect's ephemeral mode."""
    resolved = resolve_config(env, files, overrides)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    use_running_stack()
    return resolved


def use_running_stack() -> None:
    """Point this command at the stack `sluice up` started, if it runs (``$SLUICE_STACK_DIR``, default
    .sluice/stack); variables already set in the environment win."""
    from sluice.shell.stack import running_stack_env

    stack = running_stack_env(Path(os.environ.get("SLUICE_STACK_DIR", DEFAULT_STACK_DIR)))
    for key, value in stack.items():
        os.environ.setdefault(key, value)
    if stack:
        typer.echo(f"using the local stack (sluice up): Prefect {os.environ.get('PREFECT_API_URL')}, lakeFS "
                   f"{os.environ.get('LAKECTL_SERVER_ENDPOINT_URL')}, MLflow {os.environ.get('MLFLOW_TRACKING_URI')}",
                   err=True)


class _HideExplainedFailures(logging.Filter):
    """Keeps Prefect's console lines about an explained failure (its traceback, the run's "Failed" state)
    off the console: the command prints the message once, cleanly."""

    def __init__(self) -> None:
        super().__init__()
        from sluice.core.errors import explained_error_names

        self.names = explained_error_names()

    def filter(self, record: logging.LogRecord) -> bool:
        from sluice.core.errors import ExplainedError

        if record.exc_info and isinstance(record.exc_info[1], ExplainedError):
            return False
        message = record.getMessage()
        return not ("encountered an exception" in message and any(f"{name}" in message for name in self.names))


def _console_handlers() -> list[logging.Handler]:
    """The handlers that write to a terminal: Prefect puts its console handler on the root logger."""
    names = [name for name in list(logging.Logger.manager.loggerDict) if name.startswith(("prefect", "sluice"))]
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in names)]
    return [h for logger in loggers for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextmanager
def explained_failures(debug: bool, labels: dict[type, str] | None = None) -> Iterator[None]:
    """Run a flow: an explained failure (``ExplainedError``) ends the command with ``label: message`` (``labels``
    by error class, default "error") and exit status 1; every log line, tracebacks included, also goes to the
    log file (and to the console with --debug)."""
    from prefect.logging.configuration import ensure_logging_setup

    from sluice.core.errors import ExplainedError

    ensure_logging_setup()  # Prefect's console handler must exist before it can be filtered

    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(LOG_FILE)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    watched = [logging.getLogger("prefect"), logging.getLogger("sluice")]
    hide = _HideExplainedFailures()
    consoles = [] if debug else _console_handlers()
    for logger in watched:
        logger.addHandler(to_file)
    for handler in consoles:
        handler.addFilter(hide)
    try:
        yield
    except ExplainedError as error:
        label = next((text for cls, text in (labels or {}).items() if isinstance(error, cls)), "error")
        logging.getLogger("sluice.cli").error("%s: %s", label, error, exc_info=True)
        typer.echo(f"\n{label}: {error}" + ("" if debug else f"\n(details: {LOG_FILE}, or run again with --debug)"),
                   err=True)
        raise typer.Exit(1) from None
    finally:
        for handler in consoles:
            handler.removeFilter(hide)
        for logger in watched:
            logger.removeHandler(to_file)
        to_file.close()
