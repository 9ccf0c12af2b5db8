"""Data into the lake: ``sluice demo-data`` (the bundled demo datasets),
``sluice ingest`` (write-audit-publish of one dataset) and ``sluice feedback
export`` (the serving endpoint's feedback as preference data). Registered in
:mod:`.root`."""

from __future__ import annotations

import importlib
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
    stack_dir,
)


def demo_data(
    out_dir: Annotated[Path, typer.Option(
        help="Folder to (re)write the demo into: the datasets in data/, the broken sample in broken/.")] = Path("demo"),
) -> None:
    """Regenerate the bundled demo datasets and the broken sample (deterministic: same bytes every time)."""
    from sluice.core.data.demo_data import write_demo_data

    for path in write_demo_data(out_dir):
        typer.echo(f"wrote {path}")


def ingest(
    source: Annotated[str, typer.Argument(help="File, folder, saved HF dataset folder, or fsspec URL.")],
    kind: Annotated[str, typer.Option("--kind", "-k", help="Dataset kind: sft, eval or preference.")],
    source_name: Annotated[
        Optional[str], typer.Option(help="Source name for rows without a `source` field (default: file name).")
    ] = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    debug: Debug = False,
    overrides: Overrides = None,
) -> None:
    """Ingest a dataset through write-audit-publish: it reaches main only if its contract holds."""
    from sluice.core.data.kinds import KINDS

    if kind not in KINDS:
        typer.echo(f"error: unknown dataset kind {kind!r}: expected one of {', '.join(KINDS)}", err=True)
        raise typer.Exit(2)
    resolved = config_for_flows(env, config, overrides)
    from sluice.core.data.batch import IngestRejected
    from sluice.shell.local_lakefs import lakefs_environment

    # the flow's imports (Prefect, pandas, …) run while the embedded lakeFS starts in its own process
    with explained_failures(debug, {IngestRejected: "REJECTED"}), \
            lakefs_environment(resolved.lakefs, while_starting=lambda: importlib.import_module("flows.ingest")):
        from flows.ingest import ingest as ingest_flow

        result = ingest_flow(source=source, kind=kind, source_name=source_name, config=resolved)  # type: ignore[arg-type]
    typer.echo(f"\n{result.decision}: {result.message}")


def feedback_export(
    database: Annotated[Optional[Path], typer.Option(
        help="Feedback store (default: the local stack's while `sluice up` runs, else serving.state_dir/feedback.db)."
    )] = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    debug: Debug = False,
    overrides: Overrides = None,
) -> None:
    """Commit unexported feedback to lakeFS as preference data (write-audit-publish), for DPO."""
    resolved = config_for_flows(env, config, overrides)
    from sluice.shell.stack import running_stack_env

    store = database or feedback_store(resolved.serving.state_dir, "state_dir" in resolved.serving.model_fields_set,
                                       stack_running=bool(running_stack_env(stack_dir())))
    _require_feedback_store(store)
    from flows.feedback import export_feedback
    from sluice.shell.local_lakefs import lakefs_environment

    with explained_failures(debug), lakefs_environment(resolved.lakefs):
        result = export_feedback(feedback_db=str(store), config=resolved)
    typer.echo(result.message)


def feedback_store(serving_dir: Path, state_dir_set: bool, stack_running: bool) -> Path:
    """Which feedback store to export: serving.state_dir's when it was set, else the local stack's while it
    runs (`sluice up` keeps its serving endpoint's state with the stack) or when it is the only one there is
    (after `sluice down`), else serving.state_dir's default."""
    from sluice.core.data.feedback import FEEDBACK_DB

    own, stacks = serving_dir / FEEDBACK_DB, _stack_serving_dir() / FEEDBACK_DB
    if state_dir_set:
        return own
    return stacks if stack_running or (stacks.exists() and not own.exists()) else own


def _stack_serving_dir() -> Path:
    """The local stack's serving.state_dir, as its config.yaml records it (`sluice up` writes it)."""
    from sluice.core.config import load_config

    recorded = stack_dir() / "config.yaml"
    return load_config([recorded]).serving.state_dir if recorded.is_file() else stack_dir() / "serving"


def _require_feedback_store(store: Path) -> None:
    """Before anything starts: the store to export exists."""
    from sluice.core.data.feedback import FeedbackStoreMissing

    if not store.is_file():
        raise FeedbackStoreMissing(
            f"no feedback store at {store}: the serving endpoint creates feedback.db when it starts, in its "
            f"serving.state_dir ({_stack_serving_dir()} for the local stack of `sluice up`). Start serving first, "
            "or pass --database PATH")
