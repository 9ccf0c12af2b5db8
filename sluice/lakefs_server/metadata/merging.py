"""Differences between trees and lakeFS's three-way merge, path by path.

Pure functions over trees (``path -> ObjectEntry``); the store reads the trees
and applies the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .records import Difference, ObjectEntry

Tree = dict[str, ObjectEntry]


def changes(base: Tree, target: Tree, paths: Iterable[str]) -> Iterator[Difference]:
    """How ``target`` differs from ``base`` at these paths."""
    for path in paths:
        before, after = base.get(path), target.get(path)
        if before is None and after is not None:
            yield Difference("added", path, after.size_bytes)
        elif after is None and before is not None:
            yield Difference("removed", path, before.size_bytes)
        elif before is not None and after is not None and before.identity != after.identity:
            yield Difference("changed", path, after.size_bytes)


def uncommitted_changes(
    staged: Iterable[tuple[str, ObjectEntry | None]], committed: Callable[[str], ObjectEntry | None]
) -> list[Difference]:
    """Staged writes and tombstones against the committed entries. A
    deletion reports size 0 (a tombstone carries no value), as lakeFS does."""
    found = []
    for path, entry in staged:
        before = committed(path)
        if entry is None:
            if before is not None:
                found.append(Difference("removed", path, 0))
        elif before is None:
            found.append(Difference("added", path, entry.size_bytes))
        elif before.identity != entry.identity:
            found.append(Difference("changed", path, entry.size_bytes))
    return found


def three_way(base: ObjectEntry | None, ours: ObjectEntry | None, theirs: ObjectEntry | None) -> str:
    """For one path: 'keep' (destination as is), 'take-source', or 'conflict'."""
    b, o, t = (x.identity if x else None for x in (base, ours, theirs))
    if t == b or t == o:
        return "keep"  # source did not change it, or both sides made the same change
    if o == b:
        return "take-source"
    return "conflict"


def three_dot_diff(base: Tree, ours: Tree, theirs: Tree, prefix: str) -> list[Difference]:
    """What merging ``theirs`` into ``ours`` would apply: their changes since
    the base, plus conflicts."""
    found = []
    for path in sorted(base.keys() | ours.keys() | theirs.keys()):
        if not path.startswith(prefix):
            continue
        outcome = three_way(base.get(path), ours.get(path), theirs.get(path))
        if outcome == "conflict":
            found.append(Difference("conflict", path))
        elif outcome == "take-source":
            found.extend(changes(ours, theirs, [path]))
    return found


def merge_trees(base: Tree, ours: Tree, theirs: Tree, strategy: str | None) -> tuple[Tree, list[str]]:
    """The merged tree and the conflicting paths. ``source-wins`` and
    ``dest-wins`` settle conflicts instead of reporting them."""
    merged = dict(ours)
    conflicts = []
    for path in sorted(base.keys() | ours.keys() | theirs.keys()):
        outcome = three_way(base.get(path), ours.get(path), theirs.get(path))
        if outcome == "conflict":
            if strategy == "source-wins":
                outcome = "take-source"
            elif strategy != "dest-wins":
                conflicts.append(path)
        if outcome == "take-source":
            if path in theirs:
                merged[path] = theirs[path]
            else:
                merged.pop(path, None)
    return merged, conflicts
