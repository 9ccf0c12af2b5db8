"""Commits and their graph: commit records, resolving ref expressions to
commits, the log walk and the merge base."""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Iterator

from ..errors import BadRequest, NotFound
from ..refs import INVALID_REF, parse_ref
from .records import COMMIT_ID_LENGTH, Commit, ResolvedRef, commit_identity

COMMIT_COLUMNS = "id, parents, committer, message, creation_ns, tree_id, metadata, generation"


def _commit_from_row(row: tuple) -> Commit:
    id_, parents, committer, message, creation_ns, tree_id, metadata, generation = row
    return Commit(id_, json.loads(parents), committer, message, creation_ns, tree_id, json.loads(metadata), generation)


def insert_commit(
    db: sqlite3.Connection, repo: str, parents: list[str], committer: str, message: str, tree_id: str,
    metadata: dict[str, str], generation: int, creation_ns: int,
) -> Commit:
    """Record a commit; its id hashes its content at whole seconds, so an
    identical commit in the same second is the same commit."""
    commit_id = commit_identity(committer, message, tree_id, creation_ns // 1_000_000_000, metadata, parents)
    db.execute(
        f"INSERT OR IGNORE INTO commits(repo, {COMMIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
        (repo, commit_id, json.dumps(parents), committer, message, creation_ns, tree_id,
         json.dumps(metadata, sort_keys=True), generation),
    )
    return get_commit(db, repo, commit_id)


def get_commit(db: sqlite3.Connection, repo: str, commit_id: str) -> Commit:
    row = db.execute(f"SELECT {COMMIT_COLUMNS} FROM commits WHERE repo=? AND id=?", (repo, commit_id)).fetchone()
    if row is None:
        raise NotFound("commit not found")
    return _commit_from_row(row)


def commit_exists(db: sqlite3.Connection, repo: str, commit_id: str) -> bool:
    return db.execute("SELECT 1 FROM commits WHERE repo=? AND id=?", (repo, commit_id)).fetchone() is not None


def _commit_by_prefix(db: sqlite3.Connection, repo: str, prefix: str) -> str | None:
    if not all(c in "0123456789abcdef" for c in prefix.lower()) or len(prefix) > COMMIT_ID_LENGTH:
        return None
    prefix = prefix.lower()
    rows = db.execute(
        "SELECT id FROM commits WHERE repo=? AND substr(id, 1, length(?)) = ? LIMIT 2", (repo, prefix, prefix)
    ).fetchall()
    return rows[0][0] if len(rows) == 1 else None  # ambiguous: not found


def _named_commit(db: sqlite3.Connection, repo: str, name: str) -> tuple[str, str | None]:
    """The commit a name stands for, the way lakeFS looks: a full commit id,
    then a branch, then a tag, then a unique commit-id prefix. Returns the
    commit id and, for a branch, its name."""
    full_id = len(name) == COMMIT_ID_LENGTH and all(c in "0123456789abcdef" for c in name.lower())
    if full_id and commit_exists(db, repo, name.lower()):
        return name.lower(), None
    if row := db.execute("SELECT commit_id FROM branches WHERE repo=? AND name=?", (repo, name)).fetchone():
        return row[0], name
    if row := db.execute("SELECT commit_id FROM tags WHERE repo=? AND id=?", (repo, name)).fetchone():
        return row[0], None
    if found := _commit_by_prefix(db, repo, name):
        return found, None
    raise NotFound("not found")


def resolve(db: sqlite3.Connection, repo: str, ref: str) -> ResolvedRef:
    """Resolve a ref expression in an existing repository: its name (see
    :func:`_named_commit`), then its modifiers."""
    expression = parse_ref(ref)
    commit_id, branch = _named_commit(db, repo, expression.name)
    if expression.branch_modifier:
        if branch is None:
            raise BadRequest(INVALID_REF)
        if expression.branch_modifier == "$":
            raise BadRequest(f"reference '{ref}': reference to staging area with $ is not a commit")
        return ResolvedRef(commit_id=commit_id)
    for kind, count in expression.modifiers:
        commit = get_commit(db, repo, commit_id)
        if kind == "~":
            for _ in range(count):
                if not commit.parents:
                    raise NotFound("not found")
                commit = get_commit(db, repo, commit.parents[0])
            commit_id = commit.id
        elif count:
            if count > len(commit.parents):
                raise BadRequest(INVALID_REF)
            commit_id = commit.parents[count - 1]
    return ResolvedRef(commit_id=commit_id, branch=branch if expression.is_plain else None)


def log(db: sqlite3.Connection, repo: str, start_id: str, *, first_parent: bool = False) -> Iterator[Commit]:
    """Every ancestor of a commit, newest first (creation time, then the
    greater id), each once: lakeFS's commit iterator."""
    start = get_commit(db, repo, start_id)
    heap = [(-start.creation_ns, _Desc(start.id), start)]
    seen = {start.id}
    while heap:
        _, _, commit = heapq.heappop(heap)
        yield commit
        for parent_id in commit.parents[:1] if first_parent else commit.parents:
            if parent_id not in seen:
                seen.add(parent_id)
                parent = get_commit(db, repo, parent_id)
                heapq.heappush(heap, (-parent.creation_ns, _Desc(parent.id), parent))


def merge_base(db: sqlite3.Connection, repo: str, left_id: str, right_id: str) -> Commit | None:
    """Best common ancestor: walk both histories by descending generation,
    marking which side reached each commit; the first commit reached from
    both sides wins."""
    if left_id == right_id:
        return get_commit(db, repo, left_id)
    reached: dict[str, int] = {left_id: 1, right_id: 2}
    heap: list[tuple[int, int, _Desc, Commit]] = []
    for commit_id in (left_id, right_id):
        commit = get_commit(db, repo, commit_id)
        heapq.heappush(heap, (-commit.generation, -commit.creation_ns, _Desc(commit.id), commit))
    while heap:
        *_, commit = heapq.heappop(heap)
        for parent_id in commit.parents:
            before = reached.get(parent_id, 0)
            now = before | reached[commit.id]
            if now == 3:
                return get_commit(db, repo, parent_id)
            if now != before:
                reached[parent_id] = now
                parent = get_commit(db, repo, parent_id)
                heapq.heappush(heap, (-parent.generation, -parent.creation_ns, _Desc(parent.id), parent))
    return None


class _Desc(str):
    """Orders strings descending inside a min-heap (ties: greater id first)."""

    def __lt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__gt__(self, other)
