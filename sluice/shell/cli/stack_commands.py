"""The local stack (:mod:`sluice.shell.stack`): ``sluice up``, ``sluice status``
and ``sluice down``. Registered in :mod:`.root`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sluice.shell.cli.options import ConfigFiles, EnvName, Overrides, StateDir, resolve_config


def up(
    state_dir: StateDir = Path(".sluice/stack"),
    free_ports: Annotated[bool, typer.Option(help="Pick free ports instead of the defaults.")] = False,
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Start the local stack on loopback: lakeFS (embedded), MLflow, Prefect server + worker, the event bridge
    and the serving endpoint; deploy prefect.yaml; install the lakeFS action. The resolved config (from
    --config and overrides) becomes the deployments' default."""
    resolved = resolve_config(env, config, overrides)
    from sluice.shell.stack import DEFAULT_PORTS, Stack, StackError, free_port, stack_status

    if any(s.running for s in stack_status(state_dir)):
        typer.echo(f"a stack is already running from {state_dir}: `sluice status`, or `sluice down` first", err=True)
        raise typer.Exit(1)
    ports = {name: free_port() for name in DEFAULT_PORTS} if free_ports else DEFAULT_PORTS
    stack = Stack(state_dir, resolved, config or [], ports, say=typer.echo)
    try:
        state = stack.up()
    except StackError as error:
        typer.echo(f"error: {error}\n(what did start is recorded: `sluice down --state-dir {state_dir}` stops it)",
                   err=True)
        raise typer.Exit(1) from None
    _print_status(state_dir)
    typer.echo(f"\nuse it from a shell: set -a; . {state.state_dir}/stack.env; set +a")


def _print_status(state_dir: Path) -> bool:
    from sluice.shell.stack import stack_status

    statuses = stack_status(state_dir)
    if not statuses:
        typer.echo(f"no stack recorded in {state_dir}")
        return False
    for s in statuses:
        health = "" if s.health is None else f" (HTTP {s.health})"
        typer.echo(f"{s.name:<15} {'running' if s.running else 'stopped':<8} pid {s.pid:<8} {s.url or '-'}{health}")
    return all(s.running for s in statuses)


def status(state_dir: StateDir = Path(".sluice/stack")) -> None:
    """Each service of the local stack: running or not, its URL and health."""
    if not _print_status(state_dir):
        raise typer.Exit(1)


def down(state_dir: StateDir = Path(".sluice/stack")) -> None:
    """Stop exactly the services `sluice up` started (and check they are gone). A recorded pid that another
    program now holds is left alone."""
    from sluice.shell.stack import stop_stack

    stopped = stop_stack(state_dir, say=typer.echo)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running from {state_dir}")
    if (state_dir / "stack.json").exists():  # a service outlived SIGKILL: not done
        raise typer.Exit(1)
