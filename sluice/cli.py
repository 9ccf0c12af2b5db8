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
config_app = typer.Typer(help="Show and check the layered configuration.", no_args_is_help=True)
app.add_typer(lakefs_app, name="lakefs")
app.add_typer(config_app, name="config")
app.add_typer(model_app, name="model")

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
    from sluice.config import ConfigError, env_file_for, load_config

    layers = [p for p in [env_file_for(env)] if p is not None] + list(files or [])
    try:
        return load_config(layers, overrides or [])
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@config_app.command("show")
def config_show(env: EnvName = None, config: ConfigFiles = None, overrides: Overrides = None) -> None:
    """Print the resolved configuration as YAML (secrets are never part of it)."""
    from sluice.config import config_to_yaml

    typer.echo(config_to_yaml(_resolve_config(env, config, overrides)), nl=False)


@config_app.command("check")
def config_check(files: Annotated[list[Path], typer.Argument(help="YAML files to check, each on its own.")]) -> None:
    """Check config files; every problem is listed with file and line."""
    from sluice.config import ConfigError, load_config

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
    from sluice.demo_data import write_demo_data

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
    from sluice.datasets import KINDS

    if kind not in KINDS:
        typer.echo(f"error: unknown dataset kind {kind!r}: expected one of {', '.join(KINDS)}", err=True)
        raise typer.Exit(2)
    resolved = _resolve_config(env, config, overrides)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.ingest import IngestRejected
    from flows.ingest import ingest as ingest_flow
    from sluice.local_lakefs import lakefs_environment

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
    from sluice.tiny_model import build_tiny_model

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
    resolved = _resolve_config(env, config, overrides)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.train import train as train_flow
    from sluice.local_lakefs import lakefs_environment
    from tasks.finetune import TrainingError

    with lakefs_environment(resolved.lakefs):
        try:
            result = train_flow(data_ref=data_ref, config=resolved)
        except TrainingError as failed:
            typer.echo(f"\nTRAINING FAILED: {failed}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"\n{'reused' if result.reused else 'trained'}: MLflow run {result.run_id} on data commit "
               f"{result.data_commit}; model {result.merged_model_uri}")


@app.command()
def demo(env: EnvName = None, config: ConfigFiles = None, overrides: Overrides = None) -> None:
    """The main job: ingest the bundled demo datasets into the data lake through write-audit-publish.

    Uses lakeFS at LAKECTL_SERVER_ENDPOINT_URL, or starts the embedded server.
    """
    resolved = _resolve_config(env, config, overrides)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.demo import ingest_demo_data
    from sluice.local_lakefs import lakefs_environment

    with lakefs_environment(resolved.lakefs) as endpoint:
        results = ingest_demo_data(config=resolved)
    typer.echo("")
    typer.echo(f"lakeFS endpoint : {endpoint.url}{' (embedded, stopped now)' if endpoint.embedded else ''}")
    typer.echo(f"repository      : {resolved.lakefs.repository}")
    for result in results:
        commit = result.main_commit.commit_id if result.main_commit else "-"
        typer.echo(f"{result.kind:<11} : {result.decision:<24} main commit {commit}")
    typer.echo(f"main commit     : {results[-1].main_commit.commit_id if results[-1].main_commit else '-'}")
    if endpoint.embedded:
        typer.echo(
            f"browse it again : sluice lakefs serve --data-dir {resolved.lakefs.embedded_data_dir} "
            f"--port {resolved.lakefs.embedded_port}, then open {endpoint.url}/repositories/"
            f"{resolved.lakefs.repository} (access key and secret: {resolved.lakefs.embedded_data_dir}/"
            "credentials.json)"
        )
    typer.echo("try the failure path: sluice ingest demo/broken/sft.jsonl --kind sft")


@app.command()
def version() -> None:
    """Print the installed Sluicegate version."""
    from importlib.metadata import version as package_version

    typer.echo(package_version("sluicegate"))


def main() -> None:  # python -m sluice
    app(prog_name="sluice")


if __name__ == "__main__":
    sys.exit(main())
