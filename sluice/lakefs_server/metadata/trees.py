"""Trees and staging areas, row by row.

A tree (lakeFS's metarange) maps every path of a commit to its object entry.
Trees are content-addressed (``tree_id`` is the hash of their entries), so
commits with the same objects share one. A branch's staging area holds its
uncommitted writes and deletions (tombstones, rows without an address); what
a branch shows is its head commit's tree overlaid with its staging area.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator

from .records import EMPTY_TREE, ObjectEntry

ENTRY_COLUMNS = "path, address, checksum, size, mtime, content_type, metadata"
MAX_CHAR = "\U0010ffff"
_PAGE = 1000  # rows fetched per query while iterating a tree

# (lower, inclusive, upper) -> the visible entries in that path range, in order
EntryRange = Callable[[str, bool, str | None], Iterator[ObjectEntry]]


def upper_bound(prefix: str) -> str | None:
    """A string greater than every path that starts with ``prefix``."""
    return prefix + MAX_CHAR if prefix else None


def entry_from_row(row: tuple) -> ObjectEntry:
    path, address, checksum, size, mtime, content_type, metadata = row
    return ObjectEntry(path, address, checksum, size, mtime, content_type, json.loads(metadata))


def _iter_rows(
    db: sqlite3.Connection, table_filter: str, params: tuple, lower: str, inclusive: bool, upper: str | None
) -> Iterator[tuple]:
    op = ">=" if inclusive else ">"
    # Two statements, not "(? IS NULL OR path < ?)": SQLite bounds the index
    # range only with a plain comparison, else a prefix scan runs to the end.
    bounded = "AND path < ? " if upper is not None else ""
    while True:
        rows = db.execute(
            f"SELECT {ENTRY_COLUMNS} FROM {table_filter} AND path {op} ? {bounded}ORDER BY path LIMIT ?",
            (*params, lower, *((upper,) if upper is not None else ()), _PAGE),
        ).fetchall()
        yield from rows
        if len(rows) < _PAGE:
            return
        lower, op = rows[-1][0], ">"


def iter_tree(db: sqlite3.Connection, tree_id: str, lower: str = "", inclusive: bool = True,
              upper: str | None = None) -> Iterator[ObjectEntry]:
    for row in _iter_rows(db, "tree_entries WHERE tree_id=?", (tree_id,), lower, inclusive, upper):
        yield entry_from_row(row)


def iter_staging(
    db: sqlite3.Connection, repo: str, branch: str, lower: str = "", inclusive: bool = True, upper: str | None = None
) -> Iterator[tuple[str, ObjectEntry | None]]:
    """A branch's staged paths in order, each with its entry (None: a tombstone)."""
    for row in _iter_rows(db, "staging WHERE repo=? AND branch=?", (repo, branch), lower, inclusive, upper):
        yield row[0], (None if row[1] is None else entry_from_row(row))


def stage_entry(db: sqlite3.Connection, repo: str, branch: str, entry: ObjectEntry) -> None:
    db.execute(
        "INSERT OR REPLACE INTO staging(repo, branch, path, address, checksum, size, mtime, content_type, metadata) "
        "VALUES (?,?,?,?,?,?,?,?,?)",
        (repo, branch, entry.path, entry.address, entry.checksum, entry.size_bytes, entry.mtime,
         entry.content_type, json.dumps(entry.metadata, sort_keys=True)),
    )


def stage_tombstone(db: sqlite3.Connection, repo: str, branch: str, path: str) -> None:
    db.execute("INSERT OR REPLACE INTO staging(repo, branch, path, address) VALUES (?,?,?,NULL)", (repo, branch, path))


def unstage(db: sqlite3.Connection, repo: str, branch: str, path: str) -> None:
    db.execute("DELETE FROM staging WHERE repo=? AND branch=? AND path=?", (repo, branch, path))


def stage_deletions(
    db: sqlite3.Connection, repo: str, branch: str, head_tree: str, in_flight: list[str], paths: Iterable[str]
) -> None:
    """Stage deletions. A path that the head or a commit in flight holds gets
    a tombstone, so the deletion outlives that commit when it lands; any other
    path only loses what was staged (deleting nothing is a no-op, as in lakeFS)."""
    for path in paths:
        if any(tree_entry(db, tree_id, path) is not None for tree_id in (head_tree, *in_flight)):
            stage_tombstone(db, repo, branch, path)
        else:
            unstage(db, repo, branch, path)


def reset_paths(
    db: sqlite3.Connection, repo: str, branch: str, head_tree: str, in_flight: list[str], paths: Iterable[str]
) -> None:
    """Discard the staged changes of these paths. Where a commit in flight
    changes a path, stage what the head has instead (its entry, or a
    tombstone), so the reset still holds once that commit lands."""
    for path in paths:
        before = tree_entry(db, head_tree, path)
        if not any(tree_entry(db, tree_id, path) != before for tree_id in in_flight):
            unstage(db, repo, branch, path)
        elif before is None:
            stage_tombstone(db, repo, branch, path)
        else:
            stage_entry(db, repo, branch, before)


def tree_entry(db: sqlite3.Connection, tree_id: str, path: str) -> ObjectEntry | None:
    row = db.execute(
        f"SELECT {ENTRY_COLUMNS} FROM tree_entries WHERE tree_id=? AND path=?", (tree_id, path)
    ).fetchone()
    return entry_from_row(row) if row else None


def tree(db: sqlite3.Connection, tree_id: str, prefix: str = "") -> dict[str, ObjectEntry]:
    return {e.path: e for e in iter_tree(db, tree_id, prefix, True, upper_bound(prefix))}


def store_tree(db: sqlite3.Connection, entries: dict[str, ObjectEntry]) -> str:
    """Store a tree (once: an identical one is shared) and return its id."""
    if not entries:
        return EMPTY_TREE
    digest = hashlib.sha256()
    rows = []
    for path in sorted(entries):
        e = entries[path]
        row = (path, e.address, e.checksum, e.size_bytes, e.mtime, e.content_type,
               json.dumps(e.metadata, sort_keys=True))
        digest.update(json.dumps(row).encode() + b"\n")
        rows.append(row)
    tree_id = digest.hexdigest()
    if db.execute("INSERT OR IGNORE INTO trees(tree_id) VALUES (?)", (tree_id,)).rowcount:
        db.executemany(
            f"INSERT INTO tree_entries(tree_id, {ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
            [(tree_id, *row) for row in rows],
        )
    return tree_id


def overlay(
    tree_entries: Iterator[ObjectEntry], staged: Iterator[tuple[str, ObjectEntry | None]]
) -> Iterator[ObjectEntry]:
    """Merge a tree with a staging area, both in path order: staged writes
    replace the tree's entries, tombstones hide them."""
    next_tree, next_staged = next(tree_entries, None), next(staged, None)
    while next_tree is not None or next_staged is not None:
        if next_staged is None or (next_tree is not None and next_tree.path < next_staged[0]):
            assert next_tree is not None
            yield next_tree
            next_tree = next(tree_entries, None)
            continue
        if next_tree is not None and next_tree.path == next_staged[0]:
            next_tree = next(tree_entries, None)  # shadowed by the staged write or deletion
        if next_staged[1] is not None:
            yield next_staged[1]
        next_staged = next(staged, None)


def list_page(
    entries: EntryRange, prefix: str, after: str, delimiter: str, amount: int
) -> tuple[list[ObjectEntry | str], bool]:
    """A page of objects under ``prefix``, after ``after`` (exclusive); with
    a delimiter, deeper paths fold into common prefixes (plain strings)."""
    upper = upper_bound(prefix)
    lower, inclusive = (after, False) if after and after >= prefix else (prefix, True)
    if delimiter and after.startswith(prefix) and after.endswith(delimiter):
        lower, inclusive = after + MAX_CHAR, True  # resume past a whole common prefix
    results: list[ObjectEntry | str] = []
    while True:
        folded: str | None = None
        for entry in entries(lower, inclusive, upper):
            if len(results) == amount:
                return results, True
            cut = entry.path.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                folded = entry.path[: cut + len(delimiter)]
                results.append(folded)
                break
            results.append(entry)
        if folded is None:
            return results, False
        lower, inclusive = folded + MAX_CHAR, True  # skip the rest of that common prefix
