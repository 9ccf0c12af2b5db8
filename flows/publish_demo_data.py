"""Publish the bundled demo datasets into the data lake's main branch.

The main job of ``make demo`` at this stage. The files land on a branch of
their own, are committed with the flow run's lineage, and are merged into
``main``; if ``main`` already holds the same bytes, nothing is committed and
the existing commit is reported.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from sluice.config import DataConfig, SluiceConfig
from tasks.lakefs import (
    CommitRef,
    commit_branch,
    create_branch,
    delete_branch,
    ensure_repository,
    merge_branch,
    resolve_commit,
    uncommitted_changes,
    upload_files,
)

DEMO_KINDS = {"sft.jsonl": "sft", "eval.jsonl": "eval", "preference.jsonl": "preference"}


class PublishedData(BaseModel):
    repository: str
    commit_id: str
    url: str
    paths: list[str]
    changed: bool  # False: main already held this data


def demo_files(data: DataConfig) -> dict[str, Path]:
    """``{lakeFS path: local file}`` for the bundled demo datasets."""
    files = {}
    for name, kind in DEMO_KINDS.items():
        local = data.demo_source / name
        if not local.is_file():
            raise FileNotFoundError(f"{local}: demo dataset missing; regenerate with `sluice demo-data`")
        files[f"{data.datasets_prefix}/{kind}/raw/demo-{name}"] = local
    return files


def summary_markdown(result: PublishedData, branch: str) -> str:
    status = "merged into `main`" if result.changed else "already in `main` (nothing new to commit)"
    rows = "\n".join(f"| `{path}` |" for path in result.paths)
    return (
        f"# Demo data published\n\n"
        f"Data {status}.\n\n"
        f"- lakeFS repository: `{result.repository}`\n"
        f"- commit: [`{result.commit_id[:12]}`]({result.url}) (`lakefs://{result.repository}/{result.commit_id}/`)\n"
        f"- work branch: `{branch}` (deleted after the merge)\n\n"
        f"| object |\n|---|\n{rows}\n"
    )


@flow(name="publish-demo-data", log_prints=True)
def publish_demo_data(config: SluiceConfig = SluiceConfig()) -> PublishedData:  # noqa: B008 (a form default)
    logger = get_run_logger()
    lake = config.lakefs
    repo = ensure_repository(lake.repository, lake.storage_namespace, lake.default_branch)
    branch = f"demo-data-{(flow_run.get_id() or 'local')[:8]}"
    create_branch(repo.repository, branch, repo.default_branch)
    files = demo_files(config.data)
    upload_files(repo.repository, branch, {path: str(local) for path, local in files.items()})

    changes = uncommitted_changes(repo.repository, branch)
    lineage = {"prefect.flow_run_id": str(flow_run.get_id()), "prefect.flow_run_name": str(flow_run.get_name()),
               "sluice.source": str(config.data.demo_source)}
    merged: CommitRef
    if changes:
        logger.info("%d change(s) on %s: committing and merging into %s", len(changes), branch, repo.default_branch)
        commit_branch(repo.repository, branch, "Add bundled demo datasets", lineage)
        merged = merge_branch(repo.repository, branch, repo.default_branch, metadata=lineage)
    else:
        logger.info("%s already holds these files: nothing to commit", repo.default_branch)
        merged = resolve_commit(repo.repository, repo.default_branch)
    delete_branch(repo.repository, branch)

    result = PublishedData(repository=repo.repository, commit_id=merged.commit_id, url=merged.url,
                           paths=sorted(files), changed=bool(changes))
    create_markdown_artifact(markdown=summary_markdown(result, branch), key="publish-demo-data",
                             description="Demo data in the data lake")
    logger.info("main is at %s (%s)", result.commit_id, result.url)
    return result
