"""What many commands share: the options that choose the configuration
(``--env``, ``--config``, dotted overrides), ``--state-dir`` and ``--debug``;
resolving the configuration from them (any problem: every one listed, exit
status 2); and running a flow so that an explained failure shows as its
message alone (exit status 1, or 2 when the command is not set up: see
``sluice.core.errors``), its traceback kept in the log."""

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


def stack_dir() -> Path:
    """Where `sluice up` keeps the local stack's state: ``$SLUICE_STACK_DIR``, default .sluice/stack."""
    return Path(os.environ.get("SLUICE_STACK_DIR", DEFAULT_STACK_DIR))


def use_running_stack() -> bool:
    """Point this command at the stack `sluice up` started, if it runs (see :func:`stack_dir`); variables
    already set in the environment win. Whether it runs."""
    from sluice.shell.stack import running_stack_env

    stack = running_stack_env(stack_dir())
    for key, value in stack.items():
        os.environ.setdefault(key, value)
    if stack:
        typer.echo(f"using the local stack (sluice up): Prefect {os.environ.get('PREFECT_API_URL')}, lakeFS "
                   f"{os.environ.get('LAKECTL_SERVER_ENDPOINT_URL')}, MLflow {os.environ.get('MLFLOW_TRACKING_URI')}",
                   err=True)
    return bool(stack)


LAKEFS_VARIABLES = ("LAKECTL_SERVER_ENDPOINT_URL", "LAKECTL_CREDENTIALS_ACCESS_KEY_ID",
                    "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY")


def require_variables(command: str, names: tuple[str, ...], what_to_do: str) -> None:
    """A command that works on running servers (no embedded default) ends here, naming every variable it
    lacks, before it does anything (exit status 2)."""
    from sluice.core.errors import SetupError

    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        stack_env = stack_dir() / "stack.env"
        raise SetupError(f"`sluice {command}` needs {', '.join(missing)}, not set here: {what_to_do} (for the "
                         f"local stack of `sluice up`: set -a; . {stack_env}; set +a)")


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


class _NoticeTracebacks(logging.Filter):
    """With --debug: notes which exceptions' tracebacks Prefect already printed to the console (a failed
    task or flow logs its own), so the command does not print the same one again."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            self.shown.append(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
        elif "Traceback (most recent call last)" in (message := record.getMessage()):
            self.shown.append(message)
        return True

    def printed(self, error: BaseException) -> bool:
        return any(f"{type(error).__name__}: {error}" in text for text in self.shown)


def _console_handlers() -> list[logging.Handler]:
    """The handlers that write to a terminal: Prefect puts its console handler on the root logger."""
    names = [name for name in list(logging.Logger.manager.loggerDict) if name.startswith(("prefect", "sluice"))]
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in names)]
    return [h for logger in loggers for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def _log_file_handler() -> logging.FileHandler:
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(LOG_FILE)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return to_file


@contextmanager
def _log_file() -> Iterator[None]:
    """Every Prefect and Sluicegate log line, tracebacks included, also goes to the log file meanwhile."""
    to_file = _log_file_handler()
    watched = [logging.getLogger("prefect"), logging.getLogger("sluice")]
    for logger in watched:
        logger.addHandler(to_file)
    try:
        yield
    finally:
        for logger in watched:
            logger.removeHandler(to_file)
        to_file.close()


def explain(error: BaseException, debug: bool, label: str = "error", traceback_shown: bool = False) -> int:
    """Show an explained failure as ``label: message`` (its traceback in the log file, and on the console with
    --debug unless it was ``traceback_shown`` already); the exit status it calls for
    (``ExplainedError.exit_code``: 1 failed, 2 not set up)."""
    from sluice.core.errors import FAILED

    # handed to the file alone: through the logger tree it would reach Prefect's console handler too
    to_file = _log_file_handler()
    to_file.handle(logging.LogRecord("sluice.cli", logging.ERROR, __file__, 0, "%s: %s", (label, error),
                                     (type(error), error, error.__traceback__)))
    to_file.close()
    if debug and not traceback_shown:
        import traceback

        traceback.print_exception(error)
    typer.echo(f"\n{label}: {error}" + ("" if debug else f"\n(details: {LOG_FILE}, or run again with --debug)"),
               err=True)
    return getattr(error, "exit_code", FAILED)


def _require_prefect_server() -> None:
    """A Prefect server that is named (PREFECT_API_URL, or the Prefect profile) but does not answer ends the
    command here, in one message, rather than in Prefect's client (a traceback per retry)."""
    import httpx
    from prefect.settings import get_current_settings

    from sluice.core.errors import ExplainedError

    url = get_current_settings().api.url
    if not url:
        return  # ephemeral mode: the flow starts its own temporary server
    try:
        httpx.get(f"{str(url).rstrip('/')}/health", timeout=10)  # any answer will do: it is there
    except httpx.TransportError as error:
        raise ExplainedError(
            f"Prefect at {url} is not reachable ({type(error).__name__}): is it running? `sluice up` starts a "
            "local one; or unset PREFECT_API_URL to run the flow in Prefect's ephemeral mode") from error


@contextmanager
def explained_failures(debug: bool, labels: dict[type, str] | None = None) -> Iterator[None]:
    """Run a flow: an explained failure (``ExplainedError``) ends the command with ``label: message`` (``labels``
    by error class, default "error") and its exit status; every log line, tracebacks included, also goes to the
    log file (and to the console with --debug)."""
    from prefect.logging.configuration import ensure_logging_setup

    from sluice.core.errors import ExplainedError

    ensure_logging_setup()  # Prefect's console handler must exist before it can be filtered

    seen = _NoticeTracebacks()
    console_filter: logging.Filter = seen if debug else _HideExplainedFailures()
    consoles = _console_handlers()
    for handler in consoles:
        handler.addFilter(console_filter)
    try:
        with _log_file():
            _require_prefect_server()
            yield
    except ExplainedError as error:
        label = next((text for cls, text in (labels or {}).items() if isinstance(error, cls)), "error")
        raise typer.Exit(explain(error, debug, label, traceback_shown=seen.printed(error))) from None
    finally:
        for handler in consoles:
            handler.removeFilter(console_filter)
