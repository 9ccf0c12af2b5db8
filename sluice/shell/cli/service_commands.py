"""The long-running services, each in the foreground: ``sluice lakefs serve``
(the embedded lakeFS-compatible server), ``sluice serve`` (the OpenAI-compatible
model endpoint) and the event bridge (``sluice bridge serve``, ``reconcile``,
``install-action``). Registered in :mod:`.root`; ``sluice up`` starts them all
in the background."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sluice.shell.cli.options import (
    LAKEFS_VARIABLES,
    ConfigFiles,
    Debug,
    EnvName,
    Overrides,
    require_variables,
    resolve_config,
    use_running_stack,
)


def lakefs_serve(
    data_dir: Annotated[Path, typer.Option(help="Where metadata (SQLite) and objects are kept.")] = Path(
        ".sluice/lakefs"
    ),
    host: Annotated[str, typer.Option(help="Interface to bind; loopback unless you mean otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (see --ready-file).")] = 8000,
    access_key_id: Annotated[
        Optional[str], typer.Option(envvar="LAKECTL_CREDENTIALS_ACCESS_KEY_ID", help="Access key id clients must use.")
    ] = None,
    secret_access_key: Annotated[
        Optional[str],
        typer.Option(
            envvar="LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", help="Secret clients must use.", show_default=False
        ),
    ] = None,
    ready_file: Annotated[
        Optional[Path], typer.Option(help="Write {endpoint, pid} here as JSON once accepting connections.")
    ] = None,
) -> None:
    """Serve the lakeFS REST API (/api/v1) from a local data directory.

    Credentials: the flags or LAKECTL_CREDENTIALS_* variables; without them,
    the data directory's credentials.json (written by the embedded default)."""
    if not access_key_id or not secret_access_key:
        import json

        stored = data_dir / "credentials.json"
        if not stored.is_file():
            typer.echo(
                "error: credentials are required: set LAKECTL_CREDENTIALS_ACCESS_KEY_ID and "
                "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY (or pass --access-key-id/--secret-access-key)",
                err=True,
            )
            raise typer.Exit(2)
        credentials = json.loads(stored.read_text())
        access_key_id, secret_access_key = credentials["access_key_id"], credentials["secret_access_key"]
        typer.echo(f"using the access key {access_key_id} from {stored}", err=True)
    from sluice.lakefs_server.server import serve

    serve(
        data_dir=data_dir,
        host=host,
        port=port,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        ready_file=ready_file,
    )


def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to bind (default: serving.host).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to bind; 0 picks a free one (default: serving.port).")] = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Serve models:/<registry.model_name>@<serving.alias> (OpenAI-compatible), following the alias.

    API keys come from SLUICE_SERVING_API_KEYS (comma-separated); without them
    only loopback is served. MLflow at MLFLOW_TRACKING_URI (else .sluice/mlflow)."""
    resolved = resolve_config(env, config, overrides)
    from sluice.serving.app import run
    from sluice.serving.server import ServingError

    try:
        run(resolved, host, port, announce=typer.echo)
    except ServingError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def bridge_serve(
    host: Annotated[Optional[str], typer.Option(help="Address to bind (default: bridge.host).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to bind (default: bridge.port).")] = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Receive lakeFS action webhooks on POST /lakefs and emit Prefect events; reconcile missed commits.

    Needs SLUICE_BRIDGE_TOKEN (the shared secret), PREFECT_API_URL and LAKECTL_*."""
    resolved = resolve_config(env, config, overrides)
    from sluice.shell.event_bridge import PrefectUnavailable, bridge_from_environment, serve

    try:
        bridge = bridge_from_environment(resolved.bridge, resolved.lakefs.repository, resolved.lakefs.default_branch)
    except (ValueError, PrefectUnavailable) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    bind_host, bind_port = host or resolved.bridge.host, resolved.bridge.port if port is None else port
    typer.echo(f"event bridge on http://{bind_host}:{bind_port}/lakefs -> {bridge.sink.api_url}/events "
               f"(repository {bridge.repository}, branches {', '.join(resolved.bridge.watched_branches)})")
    serve(bridge, bind_host, bind_port)


def bridge_reconcile(env: EnvName = None, config: ConfigFiles = None,
                     debug: Debug = False,  # read by the app, which shows an explained failure (root.py)
                     overrides: Overrides = None) -> None:
    """One reconciliation pass: emit events for commits on watched branches that no webhook delivered.

    Needs LAKECTL_* (the lakeFS to scan), SLUICE_BRIDGE_TOKEN and PREFECT_API_URL; a running `sluice up` stack
    provides all but the token."""
    resolved = resolve_config(env, config, overrides)
    use_running_stack()
    require_variables("bridge reconcile", (*LAKEFS_VARIABLES, "SLUICE_BRIDGE_TOKEN"),
                      "set them to the lakeFS whose commits the bridge watches, and to the bridge's shared secret")
    from sluice.core.lake.client import lakefs_call, lakefs_client
    from sluice.shell.event_bridge import PrefectUnavailable, bridge_from_environment

    try:
        bridge = bridge_from_environment(resolved.bridge, resolved.lakefs.repository, resolved.lakefs.default_branch)
    except (ValueError, PrefectUnavailable) as error:  # a variable is missing: not set up
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        with lakefs_call(f"scan the watched branches of {resolved.lakefs.repository}"):
            emitted = bridge.reconcile_once(lakefs_client())
    except PrefectUnavailable as error:  # Prefect is down or refused the events
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    for event in emitted:
        typer.echo(f"emitted {event.event} {event.branch}@{event.commit_id}")
    typer.echo(f"{len(emitted)} event(s) emitted")


def bridge_install_action(
    url: Annotated[str, typer.Option(help="The bridge's base URL as lakeFS reaches it.")] = "http://127.0.0.1:8765",
    env: EnvName = None,
    config: ConfigFiles = None,
    debug: Debug = False,  # read by the app, which shows an explained failure (root.py)
    overrides: Overrides = None,
) -> None:
    """Commit deployments/lakefs-actions/sluice-bridge.yaml (with this URL) to _lakefs_actions/ on the default branch.

    lakeFS sends the secret from its own LAKEFSACTION_SLUICE_BRIDGE_TOKEN variable. Needs LAKECTL_* (a running
    `sluice up` stack provides them, and installs the action by itself)."""
    resolved = resolve_config(env, config, overrides)
    use_running_stack()
    require_variables("bridge install-action", LAKEFS_VARIABLES,
                      "set them to the lakeFS to install the action in")
    from sluice.core.lake.client import lakefs_call, lakefs_client
    from sluice.shell.event_bridge import install_action

    with lakefs_call(f"install the bridge's action in {resolved.lakefs.repository}"):
        commit = install_action(lakefs_client(), resolved.lakefs.repository, url, resolved.lakefs.default_branch)
    typer.echo(f"installed in {resolved.lakefs.repository}: commit {commit}" if commit else
               "the action is already installed with this URL")
