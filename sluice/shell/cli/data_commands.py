"""Data into the lake: ``sluice demo-data`` (the bundled demo datasets),
``sluice ingest`` (write-audit-publish of one dataset) and ``sluice feedback
export`` (the serving endpoint's feedback as preference data). Registered in
:mod:`.root`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from sluice.shell.cli.options import ConfigFiles, Debug, EnvName, Overrides, config_for_flows, explained_failures


def demo_data(
    out_dir: Annotated[Path, typer.Option(help="Folder to (re)write the demo datasets into.")] = Path("demo/data"),
) -> None:
    """Regenerate the bundled demo datasets (deterministic: same bytes every time)."""
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
    database: Annotated[Optional[Path], typer.Option(help="Feedback store (default: serving.state_dir/feedback.db).")]
    = None,
    env: EnvName = None,
    config: ConfigFiles = None,
    debug: Debug = False,
    overrides: Overrides = None,
) -> None:
    """Commit unexported feedback to lakeFS as preference data (write-audit-publish), for DPO."""
    resolved = config_for_flows(env, config, overrides)
    from flows.feedback import export_feedback
    from sluice.shell.local_lakefs import lakefs_environment

    with explained_failures(debug), lakefs_environment(resolved.lakefs):
        result = export_feedback(feedback_db=str(database) if database else None, config=resolved)
    typer.echo(result.message)
