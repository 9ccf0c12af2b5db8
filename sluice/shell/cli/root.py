"""The root of the ``sluice`` command: the app, its command groups, and the
whole command tree in the order ``sluice --help`` lists it."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from sluice.shell.cli import config_commands, data_commands, model_commands, service_commands, stack_commands


class _Sluice(typer.Typer):
    """The app; an explained failure that escapes any command (the flow commands show theirs themselves) still
    ends as its message alone, with its exit status, never as a traceback (that goes to the log)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sluice.core.errors import ExplainedError

        # With no PREFECT_API_URL a flow command starts Prefect's ephemeral API server, which Prefect gives 20 s:
        # on a busy 2-core machine it takes longer, and the command would fail for nothing
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        try:
            return super().__call__(*args, **kwargs)
        except ExplainedError as error:
            from sluice.shell.cli.options import explain

            arguments = kwargs.get("args") or (args[0] if args else sys.argv[1:])
            sys.exit(explain(error, debug="--debug" in arguments))


app = _Sluice(
    help="Sluicegate: data contracts on lakeFS branches, fine-tuning, gated promotion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
lakefs_app = typer.Typer(help="The embedded lakeFS-compatible server.", no_args_is_help=True)
model_app = typer.Typer(help="Base models.", no_args_is_help=True)
registry_app = typer.Typer(help="The MLflow model registry: aliases and their history.", no_args_is_help=True)
config_app = typer.Typer(help="Show and check the layered configuration.", no_args_is_help=True)
bridge_app = typer.Typer(help="The event bridge: lakeFS webhooks in, Prefect events out.", no_args_is_help=True)
feedback_app = typer.Typer(help="Feedback collected by the serving endpoint.", no_args_is_help=True)


def version() -> None:
    """Print the installed Sluicegate version."""
    from importlib.metadata import version as package_version

    typer.echo(package_version("sluicegate"))


# Registered here, not by decorators in each module: typer lists commands in the order they were registered
# (commands first, then groups), so this order is the order of `sluice --help`, whatever the modules' import order.
app.command("demo-data")(data_commands.demo_data)
app.command()(data_commands.ingest)
app.command()(model_commands.train)
app.command()(model_commands.demo)
app.command()(model_commands.pipeline)
app.command()(stack_commands.up)
app.command()(stack_commands.status)
app.command()(stack_commands.down)
app.command()(model_commands.rollback)
app.command()(service_commands.serve)
app.command()(version)

app.add_typer(lakefs_app, name="lakefs")
lakefs_app.command("serve")(service_commands.lakefs_serve)
app.add_typer(config_app, name="config")
config_app.command("show")(config_commands.config_show)
config_app.command("check")(config_commands.config_check)
app.add_typer(model_app, name="model")
model_app.command("fetch")(model_commands.model_fetch)
model_app.command("list")(model_commands.model_list)
model_app.command("init-tiny")(model_commands.model_init_tiny)
app.add_typer(registry_app, name="registry")
registry_app.command("history")(model_commands.registry_history)
app.add_typer(bridge_app, name="bridge")
bridge_app.command("serve")(service_commands.bridge_serve)
bridge_app.command("reconcile")(service_commands.bridge_reconcile)
bridge_app.command("install-action")(service_commands.bridge_install_action)
app.add_typer(feedback_app, name="feedback")
feedback_app.command("export")(data_commands.feedback_export)


def main() -> None:  # python -m sluice, python -m sluice.shell.cli
    app(prog_name="sluice")
