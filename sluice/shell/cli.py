"""The ``sluice`` command. Heavy imports live inside each command so that
``sluice --help`` answers at once."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
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
app.add_typer(lakefs_app, name="lakefs")
app.add_typer(config_app, name="config")
app.add_typer(model_app, name="model")
app.add_typer(registry_app, name="registry")
app.add_typer(bridge_app, name="bridge")
app.add_typer(feedback_app, name="feedback")
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


def _resolve_config(env: str | None, files: list[Path] | None, overrides: list[str] | None):
    from sluice.core.config import ConfigError, env_file_for, load_config

    layers = [p for p in [env_file_for(env)] if p is not None] + list(files or [])
    try:
        return load_config(layers, overrides or [])
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _config_for_flows(env: str | None, files: list[Path] | None, overrides: list[str] | None):  # type: ignore[no-untyped-def]
    """The resolved config, before a flow runs in Prefect's ephemeral mode (no analytics calls)."""
    resolved = _resolve_config(env, files, overrides)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return resolved


@config_app.command("show")
def config_show(env: EnvName = None, config: ConfigFiles = None, overrides: Overrides = None) -> None:
    """Print the resolved configuration as YAML (secrets are never part of it)."""
    from sluice.core.config import config_to_yaml

    typer.echo(config_to_yaml(_resolve_config(env, config, overrides)), nl=False)


@config_app.command("check")
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


@lakefs_app.command("serve")
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


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Option(help="Folder to (re)write the demo datasets into.")] = Path("demo/data"),
) -> None:
    """Regenerate the bundled demo datasets (deterministic: same bytes every time)."""
    from sluice.core.data.demo_data import write_demo_data

    for path in write_demo_data(out_dir):
        typer.echo(f"wrote {path}")


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="File, folder, saved HF dataset folder, or fsspec URL.")],
    kind: Annotated[str, typer.Option("--kind", "-k", help="Dataset kind: sft, eval or preference.")],
    source_name: Annotated[
        Optional[str], typer.Option(help="Source name for rows without a `source` field (default: file name).")
    ] = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Ingest a dataset through write-audit-publish: it reaches main only if its contract holds."""
    from sluice.core.data.kinds import KINDS

    if kind not in KINDS:
        typer.echo(f"error: unknown dataset kind {kind!r}: expected one of {', '.join(KINDS)}", err=True)
        raise typer.Exit(2)
    resolved = _config_for_flows(env, config, overrides)
    from flows.ingest import ingest as ingest_flow
    from sluice.core.data.batch import IngestRejected
    from sluice.shell.local_lakefs import lakefs_environment

    with lakefs_environment(resolved.lakefs):
        try:
            result = ingest_flow(source=source, kind=kind, source_name=source_name, config=resolved)  # type: ignore[arg-type]
        except IngestRejected as rejected:
            typer.echo(f"\nREJECTED: {rejected}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"\n{result.decision}: {result.message}")


@model_app.command("init-tiny")
def model_init_tiny(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the model and tokenizer into.")] = Path(
        ".sluice/models/tiny"
    ),
    seed: Annotated[int, typer.Option(help="Seed for the random initialisation.")] = 0,
    corpus: Annotated[
        Optional[list[Path]], typer.Option(help="JSONL files to train the tokenizer on (default: the demo data).")
    ] = None,
    hidden_size: Annotated[int, typer.Option(help="Width of the network.")] = 256,
    layers: Annotated[int, typer.Option(help="Transformer layers.")] = 4,
) -> None:
    """Build a tiny Llama-style base model offline (tokenizer trained on bundled text, random init)."""
    from sluice.core.training.tiny_model import build_tiny_model

    files = corpus or sorted(Path("demo/data").glob("*.jsonl"))
    if not files:
        typer.echo("error: no corpus files: pass --corpus FILE.jsonl (the demo data is in demo/data/)", err=True)
        raise typer.Exit(2)
    info = build_tiny_model(out_dir, files, seed=seed, hidden_size=hidden_size, layers=layers)
    typer.echo(f"built {info.path}: {info.parameters:,} parameters, vocabulary {info.vocab_size}, "
               f"{info.seconds:.1f} s")


@app.command()
def train(
    data_ref: Annotated[str, typer.Option(help="lakeFS commit id, branch or tag of the data (pinned to its commit).")] = "main",
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Fine-tune the base model on the data published at --data-ref; tracked in MLflow."""
    resolved = _config_for_flows(env, config, overrides)
    from flows.train import train as train_flow
    from sluice.core.lake.published import PublishedDataMissing
    from sluice.core.training.results import TrainingError
    from sluice.shell.local_lakefs import lakefs_environment

    with lakefs_environment(resolved.lakefs):
        try:
            result = train_flow(data_ref=data_ref, config=resolved)
        except (TrainingError, PublishedDataMissing) as failed:
            typer.echo(f"\nTRAINING FAILED: {failed}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"\n{'reused' if result.reused else 'trained'}: MLflow run {result.run_id} on data commit "
               f"{result.data_commit}; model {result.merged_model_uri}")


DEMO_CONFIG = Path("configs/experiments/demo.yaml")


@app.command()
def demo(env: EnvName = None, config: ConfigFiles = None, overrides: Overrides = None) -> None:
    """The main job: the demo data through write-audit-publish, then train, evaluate, gate and promote.

    Uses configs/experiments/demo.yaml unless -c files are given; lakeFS at
    LAKECTL_SERVER_ENDPOINT_URL (else the embedded server) and MLflow at
    MLFLOW_TRACKING_URI (else .sluice/mlflow).
    """
    resolved = _config_for_flows(env, config if config else [DEMO_CONFIG] if DEMO_CONFIG.exists() else None,
                                 overrides)
    from flows.demo import demo as demo_flow
    from sluice.shell.local_lakefs import lakefs_environment

    with lakefs_environment(resolved.lakefs) as endpoint:
        result = demo_flow(config=resolved)
    _print_pipeline(result, resolved, endpoint)


@app.command()
def pipeline(
    data_ref: Annotated[str, typer.Option(help="lakeFS ref of the data to train on (pinned to its commit).")] = "main",
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Train on --data-ref, evaluate against @champion, register, and promote through the gate."""
    resolved = _config_for_flows(env, config, overrides)
    from flows.pipeline import pipeline as pipeline_flow
    from sluice.shell.local_lakefs import lakefs_environment

    with lakefs_environment(resolved.lakefs) as endpoint:
        result = pipeline_flow(data_ref=data_ref, config=resolved)
    _print_pipeline(result, resolved, endpoint)


def _print_pipeline(result, resolved, endpoint) -> None:  # type: ignore[no-untyped-def]
    from sluice.core.registry.tracking import tracking_target

    promotion, evaluation = result.promotion, result.evaluation
    tracking = tracking_target(resolved.tracking).tracking_uri
    echo = typer.echo
    echo("")
    for ingested in result.ingested:
        echo(f"ingest {ingested.kind:<11}: {ingested.decision} ({ingested.rows_published} rows published)")
    echo(f"data commit      : {result.data_commit} in {resolved.lakefs.repository} "
         f"({endpoint.url}{', embedded, stopped now' if endpoint.embedded else ''})")
    echo(f"training run     : {result.training.run_id}{' (reused)' if result.training.reused else ''}")
    reference = evaluation.champion or evaluation.base_model
    for metric in ("rougeL", "semantic_similarity"):
        if metric in evaluation.candidate.metrics:
            theirs = f"{reference.metrics.get(metric, float('nan')):.3f} ({reference.label})" if reference else "-"
            echo(f"{metric:<17}: candidate {evaluation.candidate.metrics[metric]:.3f} vs {theirs}")
    echo(f"model version    : {promotion.version.name} version {promotion.version.version}")
    echo(f"decision         : {promotion.decision.summary()}")
    for alias, old, new in promotion.moves:
        echo(f"@{alias:<15}: {old or '-'} -> {new or '-'}")
    echo(f"MLflow           : {tracking}")
    if tracking.startswith("sqlite:"):
        echo(f"open the MLflow UI: .venv/bin/mlflow ui --backend-store-uri {tracking}")
    echo("registry history : .venv/bin/sluice registry history")


@bridge_app.command("serve")
def bridge_serve(
    host: Annotated[Optional[str], typer.Option(help="Address to bind (default: bridge.host).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to bind (default: bridge.port).")] = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Receive lakeFS action webhooks on POST /lakefs and emit Prefect events; reconcile missed commits.

    Needs SLUICE_BRIDGE_TOKEN (the shared secret), PREFECT_API_URL and LAKECTL_*."""
    resolved = _resolve_config(env, config, overrides)
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


@bridge_app.command("reconcile")
def bridge_reconcile(env: EnvName = None, config: ConfigFiles = None, overrides: Overrides = None) -> None:
    """One reconciliation pass: emit events for commits on watched branches that no webhook delivered."""
    resolved = _resolve_config(env, config, overrides)
    from sluice.shell.event_bridge import bridge_from_environment
    from sluice.core.lake.client import lakefs_client

    bridge = bridge_from_environment(resolved.bridge, resolved.lakefs.repository, resolved.lakefs.default_branch)
    emitted = bridge.reconcile_once(lakefs_client())
    for event in emitted:
        typer.echo(f"emitted {event.event} {event.branch}@{event.commit_id}")
    typer.echo(f"{len(emitted)} event(s) emitted")


@bridge_app.command("install-action")
def bridge_install_action(
    url: Annotated[str, typer.Option(help="The bridge's base URL as lakeFS reaches it.")] = "http://127.0.0.1:8765",
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Commit deployments/lakefs-actions/sluice-bridge.yaml (with this URL) to _lakefs_actions/ on the default branch.

    lakeFS sends the secret from its own LAKEFSACTION_SLUICE_BRIDGE_TOKEN variable."""
    resolved = _resolve_config(env, config, overrides)
    from sluice.shell.event_bridge import install_action
    from sluice.core.lake.client import lakefs_client

    commit = install_action(lakefs_client(), resolved.lakefs.repository, url, resolved.lakefs.default_branch)
    typer.echo(f"installed in {resolved.lakefs.repository}: commit {commit}" if commit else
               "the action is already installed with this URL")


@feedback_app.command("export")
def feedback_export(
    database: Annotated[Optional[Path], typer.Option(help="Feedback store (default: serving.state_dir/feedback.db).")]
    = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Commit unexported feedback to lakeFS as preference data (write-audit-publish), for DPO."""
    resolved = _config_for_flows(env, config, overrides)
    from flows.feedback import export_feedback
    from sluice.shell.local_lakefs import lakefs_environment

    with lakefs_environment(resolved.lakefs):
        result = export_feedback(feedback_db=str(database) if database else None, config=resolved)
    typer.echo(result.message)


@app.command()
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
    resolved = _resolve_config(env, config, overrides)
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


@app.command()
def status(state_dir: StateDir = Path(".sluice/stack")) -> None:
    """Each service of the local stack: running or not, its URL and health."""
    if not _print_status(state_dir):
        raise typer.Exit(1)


@app.command()
def down(state_dir: StateDir = Path(".sluice/stack")) -> None:
    """Stop exactly the services `sluice up` started (and check they are gone)."""
    from sluice.shell.stack import stop_stack

    stopped = stop_stack(state_dir, say=typer.echo)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running from {state_dir}")


@registry_app.command("history")
def registry_history(
    at: Annotated[Optional[str], typer.Option(help="Also say which version was @champion at this ISO time.")] = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Every alias move of the registered model (the ledger), oldest first."""
    from datetime import UTC, datetime

    resolved = _resolve_config(env, config, overrides)
    from sluice.core.registry.client import ModelRegistry
    from sluice.core.registry.ledger import read_ledger, served_at
    from sluice.core.registry.tracking import tracking_target

    entries = read_ledger(ModelRegistry(tracking_target(resolved.tracking), resolved.registry.model_name))
    if not entries:
        typer.echo(f"no alias moves recorded for {resolved.registry.model_name}")
    for entry in entries:
        typer.echo(f"{entry.at.isoformat(timespec='seconds')}  @{entry.alias:<9} {entry.from_version or '-':>4} -> "
                   f"{entry.to_version or '-':<4} {entry.action:<9} flow run {entry.flow_run}  "
                   f"(evidence: run {entry.evidence_run})")
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            typer.echo(f"error: --at {at!r} is not an ISO time (e.g. 2026-11-21T12:00:00+00:00)", err=True)
            raise typer.Exit(2) from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        typer.echo(f"@champion at {moment.isoformat()}: {served_at(entries, moment) or 'none'}")


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="Why; recorded in the ledger.")] = "manual rollback",
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Move @champion back to @previous (recorded in the ledger)."""
    resolved = _config_for_flows(env, config, overrides)
    from flows.promote import rollback as rollback_flow
    from sluice.core.promotion.aliases import RollbackError

    try:
        moves = rollback_flow(reason=reason, config=resolved)
    except RollbackError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    for alias, old, new in moves:
        typer.echo(f"@{alias}: {old or '-'} -> {new or '-'}")


@app.command()
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
    resolved = _resolve_config(env, config, overrides)
    from sluice.serving.server import ServingError, run

    try:
        run(resolved, host, port, announce=typer.echo)
    except ServingError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@app.command()
def version() -> None:
    """Print the installed Sluicegate version."""
    from importlib.metadata import version as package_version

    typer.echo(package_version("sluicegate"))


def main() -> None:  # python -m sluice
    app(prog_name="sluice")


if __name__ == "__main__":
    sys.exit(main())
