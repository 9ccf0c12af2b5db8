"""Raw data committed on an ``incoming-*`` branch: which changed files are
data, and of which kind (their top folder says: ``sft/``, ``eval/``,
``preference/``)."""

from __future__ import annotations

from pydantic import BaseModel

from sluice.core.data.kinds import DatasetKind
from sluice.core.errors import ExplainedError

# eval last: its contract checks that eval rows do not overlap the training data already published
INCOMING_KINDS: tuple[str, ...] = ("sft", "preference", "eval")


class IncomingFile(BaseModel):
    path: str
    kind: DatasetKind


class IncomingRejected(ExplainedError, RuntimeError):
    """At least one incoming file did not reach main."""


def incoming_files(changed_paths: list[str]) -> tuple[list[IncomingFile], list[str]]:
    """(files to ingest, in ingest order; paths skipped): the top folder must name a dataset kind."""
    files, skipped = [], []
    for path in sorted(changed_paths):
        top = path.split("/", 1)[0]
        if "/" in path and top in INCOMING_KINDS and not path.startswith("_"):
            files.append(IncomingFile(path=path, kind=top))  # type: ignore[arg-type]
        else:
            skipped.append(path)
    return sorted(files, key=lambda f: (INCOMING_KINDS.index(f.kind), f.path)), skipped
