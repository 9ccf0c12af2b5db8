"""Versioned metadata of the embedded lakeFS-compatible server, in SQLite.

The model is lakeFS's (its "graveler"): a repository has commits; a commit
points at a *tree* (lakeFS's metarange: every path → object entry); a branch
points at a commit and owns a *staging* area of uncommitted writes and
deletions (tombstones) that overlays that commit. Trees are content-addressed
(``tree_id`` is the hash of their entries) and shared between commits.

Commits and merges happen in two steps so that pre-hooks can run in between,
as in lakeFS: *prepare* builds the new tree and commit record without moving
anything; *apply* moves the branch in one SQLite transaction. A crash at any
point leaves a branch before or after the operation, never half-way. The
server calls this class from a single thread, which serialises all changes.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadRequest, Conflict, Forbidden, MergeConflict, NotFound
from .refs import INVALID_REF, parse_ref

SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (
    name TEXT PRIMARY KEY,
    storage_namespace TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    creation_date INTEGER NOT NULL,
    read_only INTEGER NOT NULL DEFAULT 0
);
-- lakeFS marks a storage namespace as used forever (its _lakefs/dummy object)
CREATE TABLE IF NOT EXISTS used_namespaces (storage_namespace TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS commits (
    repo TEXT NOT NULL,
    id TEXT NOT NULL,
    parents TEXT NOT NULL,
    committer TEXT NOT NULL,
    message TEXT NOT NULL,
    creation_ns INTEGER NOT NULL,
    tree_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (repo, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS branches (
    repo TEXT NOT NULL,
    name TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repo, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL,
    id TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    PRIMARY KEY (repo, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trees (tree_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_entries (
    tree_id TEXT NOT NULL,
    path TEXT NOT NULL,
    address TEXT NOT NULL,
    checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (tree_id, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staging (
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    path TEXT NOT NULL,
    address TEXT,            -- NULL: a tombstone (deleted since the last commit)
    checksum TEXT,
    size INTEGER,
    mtime INTEGER,
    content_type TEXT,
    metadata TEXT,
    PRIMARY KEY (repo, branch, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS action_runs (
    repo TEXT NOT NULL,
    run_id TEXT NOT NULL,
    branch TEXT NOT NULL,
    event_type TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    status TEXT NOT NULL,
    hooks TEXT NOT NULL,
    PRIMARY KEY (repo, run_id)
) WITHOUT ROWID;
"""

EMPTY_TREE = hashlib.sha256(b"").hexdigest()
COMMIT_ID_LENGTH = 64
MAX_PATH_BYTES = 1024
_PAGE = 1000  # rows fetched per query while iterating a tree
_MAX_CHAR = "\U0010ffff"


def upper_bound(prefix: str) -> str | None:
    """A string greater than every path that starts with ``prefix``."""
    return prefix + _MAX_CHAR if prefix else None


def validate_path(path: str | None) -> str:
    if not path:
        raise BadRequest("argument path: missing path: required value: validation error")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise BadRequest(
            f"argument path: invalid value: validation error: {len(path.encode())} is above maximum length "
            f"({MAX_PATH_BYTES})"
        )
    return path


@dataclass(frozen=True)
class ObjectEntry:
    path: str
    address: str  # sha256 of the bytes: where the blob store keeps them
    checksum: str  # md5 hex, lakeFS's ETag
    size_bytes: int
    mtime: int
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, int, str, str]:
        """What makes two entries the same object (lakeFS: size, ETag, user
        metadata, content type); mtime does not count."""
        return (self.checksum, self.size_bytes, self.content_type, json.dumps(self.metadata, sort_keys=True))


@dataclass(frozen=True)
class Commit:
    id: str
    parents: list[str]
    committer: str
    message: str
    creation_ns: int
    tree_id: str
    metadata: dict[str, str]
    generation: int

    @property
    def creation_date(self) -> int:
        return self.creation_ns // 1_000_000_000


@dataclass(frozen=True)
class Repository:
    name: str
    storage_namespace: str
    default_branch: str
    creation_date: int
    read_only: bool


@dataclass(frozen=True)
class ResolvedRef:
    """A ref resolved to a commit. ``branch`` is set when reads must overlay
    that branch's staging area."""

    commit_id: str
    branch: str | None = None


@dataclass(frozen=True)
class Difference:
    type: str  # added | removed | changed | conflict
    path: str
    size_bytes: int | None = None


@dataclass(frozen=True)
class PendingCommit:
    """A commit built but not yet applied to its branch."""

    repo: str
    branch: str
    commit: Commit
    expected_head: str
    staged: tuple[tuple[str, ObjectEntry | None], ...]


@dataclass(frozen=True)
class PendingMerge:
    repo: str
    destination: str
    source_commit_id: str
    commit: Commit
    expected_head: str


def commit_identity(
    committer: str, message: str, tree_id: str, creation_seconds: int, metadata: dict[str, str], parents: list[str]
) -> str:
    """A commit's id is the hash of what it says, as in lakeFS: re-adding an
    identical commit is a no-op."""
    canonical = json.dumps(
        {"committer": committer, "message": message, "tree": tree_id, "date": creation_seconds,
         "metadata": metadata, "parents": parents},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


_ENTRY_COLUMNS = "path, address, checksum, size, mtime, content_type, metadata"
_COMMIT_COLUMNS = "id, parents, committer, message, creation_ns, tree_id, metadata, generation"


def _entry_from_row(row: tuple) -> ObjectEntry:
    path, address, checksum, size, mtime, content_type, metadata = row
    return ObjectEntry(path, address, checksum, size, mtime, content_type, json.loads(metadata))


def _commit_from_row(row: tuple) -> Commit:
    id_, parents, committer, message, creation_ns, tree_id, metadata, generation = row
    return Commit(id_, json.loads(parents), committer, message, creation_ns, tree_id, json.loads(metadata), generation)


def _changes(
    base: dict[str, ObjectEntry], target: dict[str, ObjectEntry], paths: Iterable[str]
) -> Iterator[Difference]:
    for path in paths:
        before, after = base.get(path), target.get(path)
        if before is None and after is not None:
            yield Difference("added", path, after.size_bytes)
        elif after is None and before is not None:
            yield Difference("removed", path, before.size_bytes)
        elif before is not None and after is not None and before.identity != after.identity:
            yield Difference("changed", path, after.size_bytes)


class MetadataStore:
    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; each transaction stays atomic.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO trees(tree_id) VALUES (?)", (EMPTY_TREE,))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---------------------------------------------------------------- repositories

    def create_repository(self, name: str, storage_namespace: str, default_branch: str) -> Repository:
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM repositories WHERE name=?", (name,)).fetchone():
                raise Conflict("error creating repository: not unique")
            if db.execute("SELECT 1 FROM used_namespaces WHERE storage_namespace=?",
                          (storage_namespace.rstrip("/"),)).fetchone():
                raise BadRequest(
                    f"failed to create repository: found lakeFS objects in the storage ({storage_namespace}): "
                    "storage namespace already in use"
                )
            db.execute("INSERT INTO used_namespaces VALUES (?)", (storage_namespace.rstrip("/"),))
            db.execute(
                "INSERT INTO repositories(name, storage_namespace, default_branch, creation_date) VALUES (?,?,?,?)",
                (name, storage_namespace, default_branch, int(time.time())),
            )
            first = self._insert_commit(name, [], "", "Repository created", EMPTY_TREE, {}, 1)
            db.execute("INSERT INTO branches(repo, name, commit_id) VALUES (?,?,?)", (name, default_branch, first.id))
        return self.get_repository(name)

    def get_repository(self, name: str) -> Repository:
        row = self.db.execute(
            "SELECT name, storage_namespace, default_branch, creation_date, read_only FROM repositories WHERE name=?",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound("repository not found")
        return Repository(row[0], row[1], row[2], row[3], bool(row[4]))

    def list_repositories(self, prefix: str, after: str, amount: int) -> tuple[list[Repository], bool]:
        rows = self.db.execute(
            "SELECT name FROM repositories WHERE name > ? AND substr(name, 1, length(?)) = ? ORDER BY name LIMIT ?",
            (after, prefix, prefix, amount + 1),
        ).fetchall()
        return [self.get_repository(r[0]) for r in rows[:amount]], len(rows) > amount

    def delete_repository(self, name: str) -> None:
        self.get_repository(name)
        with self.transaction() as db:
            for table in ("commits", "branches", "tags", "staging", "action_runs"):
                db.execute(f"DELETE FROM {table} WHERE repo=?", (name,))
            db.execute("DELETE FROM repositories WHERE name=?", (name,))

    # ---------------------------------------------------------------- commits and refs

    def _insert_commit(
        self, repo: str, parents: list[str], committer: str, message: str, tree_id: str,
        metadata: dict[str, str], generation: int,
    ) -> Commit:
        creation_ns = time.time_ns()
        commit_id = commit_identity(committer, message, tree_id, creation_ns // 1_000_000_000, metadata, parents)
        self.db.execute(
            f"INSERT OR IGNORE INTO commits(repo, {_COMMIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (repo, commit_id, json.dumps(parents), committer, message, creation_ns, tree_id,
             json.dumps(metadata, sort_keys=True), generation),
        )
        return self.get_commit(repo, commit_id)

    def get_commit(self, repo: str, commit_id: str) -> Commit:
        row = self.db.execute(
            f"SELECT {_COMMIT_COLUMNS} FROM commits WHERE repo=? AND id=?", (repo, commit_id)
        ).fetchone()
        if row is None:
            raise NotFound("commit not found")
        return _commit_from_row(row)

    def _commit_by_prefix(self, repo: str, prefix: str) -> str | None:
        if not all(c in "0123456789abcdef" for c in prefix.lower()) or len(prefix) > COMMIT_ID_LENGTH:
            return None
        prefix = prefix.lower()
        rows = self.db.execute(
            "SELECT id FROM commits WHERE repo=? AND substr(id, 1, length(?)) = ? LIMIT 2", (repo, prefix, prefix)
        ).fetchall()
        return rows[0][0] if len(rows) == 1 else None  # ambiguous: not found

    def resolve(self, repo: str, ref: str) -> ResolvedRef:
        """Resolve a ref expression the way lakeFS does: a full commit id, then
        a branch, then a tag, then a unique commit-id prefix; then modifiers."""
        self.get_repository(repo)
        expression = parse_ref(ref)
        name = expression.name
        branch: str | None = None
        full_id = len(name) == COMMIT_ID_LENGTH and all(c in "0123456789abcdef" for c in name.lower())
        if full_id and self.db.execute(
            "SELECT 1 FROM commits WHERE repo=? AND id=?", (repo, name.lower())
        ).fetchone():
            commit_id = name.lower()
        elif row := self.db.execute("SELECT commit_id FROM branches WHERE repo=? AND name=?", (repo, name)).fetchone():
            commit_id, branch = row[0], name
        elif row := self.db.execute("SELECT commit_id FROM tags WHERE repo=? AND id=?", (repo, name)).fetchone():
            commit_id = row[0]
        elif found := self._commit_by_prefix(repo, name):
            commit_id = found
        else:
            raise NotFound("not found")
        if expression.branch_modifier:
            if branch is None:
                raise BadRequest(INVALID_REF)
            if expression.branch_modifier == "$":
                raise BadRequest(f"reference '{ref}': reference to staging area with $ is not a commit")
            return ResolvedRef(commit_id=commit_id)
        for kind, count in expression.modifiers:
            commit = self.get_commit(repo, commit_id)
            if kind == "~":
                for _ in range(count):
                    if not commit.parents:
                        raise NotFound("not found")
                    commit = self.get_commit(repo, commit.parents[0])
                commit_id = commit.id
            elif count:
                if count > len(commit.parents):
                    raise BadRequest(INVALID_REF)
                commit_id = commit.parents[count - 1]
        return ResolvedRef(commit_id=commit_id, branch=branch if expression.is_plain else None)

    def resolve_commit(self, repo: str, ref: str) -> Commit:
        return self.get_commit(repo, self.resolve(repo, ref).commit_id)

    def log(self, repo: str, start_id: str, *, first_parent: bool = False) -> Iterator[Commit]:
        """Every ancestor of a commit, newest first (creation time, then the
        greater id), each once: lakeFS's commit iterator."""
        start = self.get_commit(repo, start_id)
        heap = [(-start.creation_ns, _Desc(start.id), start)]
        seen = {start.id}
        while heap:
            _, _, commit = heapq.heappop(heap)
            yield commit
            for parent_id in commit.parents[:1] if first_parent else commit.parents:
                if parent_id not in seen:
                    seen.add(parent_id)
                    parent = self.get_commit(repo, parent_id)
                    heapq.heappush(heap, (-parent.creation_ns, _Desc(parent.id), parent))

    def merge_base(self, repo: str, left_id: str, right_id: str) -> Commit | None:
        """Best common ancestor: walk both histories by descending generation,
        marking which side reached each commit; the first commit reached from
        both sides wins."""
        if left_id == right_id:
            return self.get_commit(repo, left_id)
        reached: dict[str, int] = {left_id: 1, right_id: 2}
        heap: list[tuple[int, int, _Desc, Commit]] = []
        for commit_id in (left_id, right_id):
            commit = self.get_commit(repo, commit_id)
            heapq.heappush(heap, (-commit.generation, -commit.creation_ns, _Desc(commit.id), commit))
        while heap:
            *_, commit = heapq.heappop(heap)
            for parent_id in commit.parents:
                before = reached.get(parent_id, 0)
                now = before | reached[commit.id]
                if now == 3:
                    return self.get_commit(repo, parent_id)
                if now != before:
                    reached[parent_id] = now
                    parent = self.get_commit(repo, parent_id)
                    heapq.heappush(heap, (-parent.generation, -parent.creation_ns, _Desc(parent.id), parent))
        return None

    # ---------------------------------------------------------------- branches

    def resolve_source(self, repo: str, source: str) -> ResolvedRef:
        """Resolve the source of a new branch, with lakeFS's messages."""
        self.get_repository(repo)
        try:
            return self.resolve(repo, source)
        except NotFound:
            raise NotFound(f"source reference '{source}': not found") from None
        except BadRequest as exc:
            raise BadRequest(f"source reference '{source}': {exc.message}") from None

    def create_branch(self, repo: str, name: str, source: str, hidden: bool = False) -> str:
        self.get_repository(repo)
        if self.db.execute("SELECT 1 FROM commits WHERE repo=? AND id=?", (repo, name)).fetchone():
            raise Conflict(f"commit ID {name}: conflict found")
        if self.db.execute("SELECT 1 FROM tags WHERE repo=? AND id=?", (repo, name)).fetchone():
            raise Conflict(f"tag ID {name}: conflict found")
        commit_id = self.resolve_source(repo, source).commit_id
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM branches WHERE repo=? AND name=?", (repo, name)).fetchone():
                raise Conflict("branch already exists: not unique")
            db.execute(
                "INSERT INTO branches(repo, name, commit_id, hidden) VALUES (?,?,?,?)",
                (repo, name, commit_id, int(hidden)),
            )
        return commit_id

    def branch_head(self, repo: str, name: str, missing: str = "branch not found") -> str:
        self.get_repository(repo)
        row = self.db.execute("SELECT commit_id FROM branches WHERE repo=? AND name=?", (repo, name)).fetchone()
        if row is None:
            raise NotFound(missing)
        return row[0]

    def list_branches(
        self, repo: str, prefix: str, after: str, amount: int, show_hidden: bool = False
    ) -> tuple[list[tuple[str, str]], bool]:
        self.get_repository(repo)
        rows = self.db.execute(
            "SELECT name, commit_id FROM branches WHERE repo=? AND (hidden=0 OR ?) AND name > ? "
            "AND substr(name, 1, length(?)) = ? ORDER BY name LIMIT ?",
            (repo, int(show_hidden), after, prefix, prefix, amount + 1),
        ).fetchall()
        return [(r[0], r[1]) for r in rows[:amount]], len(rows) > amount

    def delete_branch(self, repo: str, name: str) -> None:
        repository = self.get_repository(repo)
        self.branch_head(repo, name)
        if name == repository.default_branch:
            raise Forbidden("cannot delete repository default branch")
        with self.transaction() as db:
            db.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, name))
            db.execute("DELETE FROM branches WHERE repo=? AND name=?", (repo, name))

    def reset_branch(self, repo: str, branch: str, kind: str, path: str | None) -> None:
        """Discard uncommitted changes: all of them, one object, or a prefix."""
        self.branch_head(repo, branch)
        if kind in ("object", "common_prefix") and not path:
            raise BadRequest("argument path: missing path: required value: validation error")
        with self.transaction() as db:
            if kind == "reset":
                db.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, branch))
            elif kind == "object":
                db.execute("DELETE FROM staging WHERE repo=? AND branch=? AND path=?", (repo, branch, path))
            elif kind == "common_prefix":
                db.execute(
                    "DELETE FROM staging WHERE repo=? AND branch=? AND substr(path, 1, length(?)) = ?",
                    (repo, branch, path, path),
                )
            else:
                raise BadRequest("argument type: invalid value: validation error")

    # ---------------------------------------------------------------- tags

    def create_tag(self, repo: str, tag: str, ref: str) -> str:
        self.get_repository(repo)
        if self.db.execute("SELECT 1 FROM branches WHERE repo=? AND name=?", (repo, tag)).fetchone():
            raise Conflict(f"branch name {tag}: conflict found")
        if self.db.execute("SELECT 1 FROM commits WHERE repo=? AND id=?", (repo, tag)).fetchone():
            raise Conflict(f"commit ID {tag}: conflict found")
        commit_id = self.resolve(repo, ref).commit_id
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM tags WHERE repo=? AND id=?", (repo, tag)).fetchone():
                raise Conflict("tag already exists: not unique")
            db.execute("INSERT INTO tags(repo, id, commit_id) VALUES (?,?,?)", (repo, tag, commit_id))
        return commit_id

    def get_tag(self, repo: str, tag: str) -> str:
        self.get_repository(repo)
        row = self.db.execute("SELECT commit_id FROM tags WHERE repo=? AND id=?", (repo, tag)).fetchone()
        if row is None:
            raise NotFound("tag not found")
        return row[0]

    def list_tags(self, repo: str, prefix: str, after: str, amount: int) -> tuple[list[tuple[str, str]], bool]:
        self.get_repository(repo)
        rows = self.db.execute(
            "SELECT id, commit_id FROM tags WHERE repo=? AND id > ? AND substr(id, 1, length(?)) = ? "
            "ORDER BY id LIMIT ?",
            (repo, after, prefix, prefix, amount + 1),
        ).fetchall()
        return [(r[0], r[1]) for r in rows[:amount]], len(rows) > amount

    def delete_tag(self, repo: str, tag: str) -> None:
        self.get_tag(repo, tag)
        with self.transaction() as db:
            db.execute("DELETE FROM tags WHERE repo=? AND id=?", (repo, tag))

    # ---------------------------------------------------------------- objects

    def stage_object(self, repo: str, branch: str, entry: ObjectEntry) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO staging(repo, branch, path, address, checksum, size, mtime, content_type, "
                "metadata) VALUES (?,?,?,?,?,?,?,?,?)",
                (repo, branch, entry.path, entry.address, entry.checksum, entry.size_bytes, entry.mtime,
                 entry.content_type, json.dumps(entry.metadata, sort_keys=True)),
            )

    def delete_objects(self, repo: str, branch: str, paths: Iterable[str]) -> None:
        """Stage deletions; deleting what does not exist is a no-op (as in lakeFS)."""
        tree_id = self.get_commit(repo, self.branch_head(repo, branch)).tree_id
        with self.transaction() as db:
            for path in paths:
                if self._tree_entry(tree_id, path) is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO staging(repo, branch, path, address) VALUES (?,?,?,NULL)",
                        (repo, branch, path),
                    )
                else:
                    db.execute("DELETE FROM staging WHERE repo=? AND branch=? AND path=?", (repo, branch, path))

    def _tree_entry(self, tree_id: str, path: str) -> ObjectEntry | None:
        row = self.db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM tree_entries WHERE tree_id=? AND path=?", (tree_id, path)
        ).fetchone()
        return _entry_from_row(row) if row else None

    def get_entry(self, repo: str, ref: ResolvedRef, path: str) -> ObjectEntry | None:
        if ref.branch is not None:
            row = self.db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM staging WHERE repo=? AND branch=? AND path=?",
                (repo, ref.branch, path),
            ).fetchone()
            if row is not None:
                return None if row[1] is None else _entry_from_row(row)
        return self._tree_entry(self.get_commit(repo, ref.commit_id).tree_id, path)

    def _iter_rows(
        self, table_filter: str, params: tuple, lower: str, inclusive: bool, upper: str | None
    ) -> Iterator[tuple]:
        op = ">=" if inclusive else ">"
        # Two statements, not "(? IS NULL OR path < ?)": SQLite bounds the index
        # range only with a plain comparison, else a prefix scan runs to the end.
        bounded = "AND path < ? " if upper is not None else ""
        while True:
            rows = self.db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM {table_filter} AND path {op} ? {bounded}ORDER BY path LIMIT ?",
                (*params, lower, *((upper,) if upper is not None else ()), _PAGE),
            ).fetchall()
            yield from rows
            if len(rows) < _PAGE:
                return
            lower, op = rows[-1][0], ">"

    def _iter_tree(self, tree_id: str, lower: str = "", inclusive: bool = True,
                   upper: str | None = None) -> Iterator[ObjectEntry]:
        for row in self._iter_rows("tree_entries WHERE tree_id=?", (tree_id,), lower, inclusive, upper):
            yield _entry_from_row(row)

    def _iter_staging(
        self, repo: str, branch: str, lower: str = "", inclusive: bool = True, upper: str | None = None
    ) -> Iterator[tuple[str, ObjectEntry | None]]:
        for row in self._iter_rows("staging WHERE repo=? AND branch=?", (repo, branch), lower, inclusive, upper):
            yield row[0], (None if row[1] is None else _entry_from_row(row))

    def iter_entries(
        self, repo: str, ref: ResolvedRef, lower: str = "", inclusive: bool = True, upper: str | None = None
    ) -> Iterator[ObjectEntry]:
        """Objects visible at ``ref`` in path order: the commit's tree, overlaid
        with the branch's staged writes and deletions."""
        tree = self._iter_tree(self.get_commit(repo, ref.commit_id).tree_id, lower, inclusive, upper)
        if ref.branch is None:
            yield from tree
            return
        staged = self._iter_staging(repo, ref.branch, lower, inclusive, upper)
        next_tree, next_staged = next(tree, None), next(staged, None)
        while next_tree is not None or next_staged is not None:
            if next_staged is None or (next_tree is not None and next_tree.path < next_staged[0]):
                assert next_tree is not None
                yield next_tree
                next_tree = next(tree, None)
                continue
            if next_tree is not None and next_tree.path == next_staged[0]:
                next_tree = next(tree, None)  # shadowed by the staged write or deletion
            if next_staged[1] is not None:
                yield next_staged[1]
            next_staged = next(staged, None)

    def list_objects(
        self, repo: str, ref: ResolvedRef, prefix: str, after: str, delimiter: str, amount: int
    ) -> tuple[list[ObjectEntry | str], bool]:
        """A page of objects under ``prefix``, after ``after`` (exclusive); with
        a delimiter, deeper paths fold into common prefixes (plain strings)."""
        upper = upper_bound(prefix)
        lower, inclusive = (after, False) if after > prefix else (prefix, True)
        if delimiter and after.startswith(prefix) and after.endswith(delimiter):
            lower, inclusive = after + _MAX_CHAR, True  # resume past a whole common prefix
        results: list[ObjectEntry | str] = []
        while True:
            folded: str | None = None
            for entry in self.iter_entries(repo, ref, lower, inclusive, upper):
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
            lower, inclusive = folded + _MAX_CHAR, True  # skip the rest of that common prefix

    # ---------------------------------------------------------------- commit

    def tree(self, tree_id: str, prefix: str = "") -> dict[str, ObjectEntry]:
        return {e.path: e for e in self._iter_tree(tree_id, prefix, True, upper_bound(prefix))}

    def tree_entry(self, tree_id: str, path: str) -> ObjectEntry | None:
        return self._tree_entry(tree_id, path)

    def _store_tree(self, entries: dict[str, ObjectEntry]) -> str:
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
        if self.db.execute("INSERT OR IGNORE INTO trees(tree_id) VALUES (?)", (tree_id,)).rowcount:
            self.db.executemany(
                f"INSERT INTO tree_entries(tree_id, {_ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                [(tree_id, *row) for row in rows],
            )
        return tree_id

    def prepare_commit(
        self, repo: str, branch: str, *, message: str, metadata: dict[str, str], committer: str,
        allow_empty: bool, date: int | None = None,
    ) -> PendingCommit:
        """Build the commit of everything staged on ``branch`` (not applied yet)."""
        head = self.get_commit(repo, self.branch_head(repo, branch))
        staged = tuple(self._iter_staging(repo, branch))
        committed = self.tree(head.tree_id)
        entries = dict(committed)
        for path, entry in staged:
            if entry is None:
                entries.pop(path, None)
            else:
                entries[path] = entry
        if not allow_empty and next(_changes(committed, entries, {p for p, _ in staged}), None) is None:
            raise BadRequest("commit: no changes")
        with self.transaction():
            tree_id = self._store_tree(entries)
            if date is not None:
                commit = self._insert_commit_dated(repo, [head.id], committer, message, tree_id, metadata,
                                                   head.generation + 1, date)
            else:
                commit = self._insert_commit(repo, [head.id], committer, message, tree_id, metadata,
                                             head.generation + 1)
        return PendingCommit(repo, branch, commit, head.id, staged)

    def _insert_commit_dated(
        self, repo: str, parents: list[str], committer: str, message: str, tree_id: str,
        metadata: dict[str, str], generation: int, date: int,
    ) -> Commit:
        commit_id = commit_identity(committer, message, tree_id, date, metadata, parents)
        self.db.execute(
            f"INSERT OR IGNORE INTO commits(repo, {_COMMIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (repo, commit_id, json.dumps(parents), committer, message, date * 1_000_000_000, tree_id,
             json.dumps(metadata, sort_keys=True), generation),
        )
        return self.get_commit(repo, commit_id)

    def apply_commit(self, pending: PendingCommit) -> Commit:
        """Move the branch to the prepared commit and drop the staged entries it
        took. Writes staged after ``prepare_commit`` stay staged (lakeFS seals
        the staging area in the same way)."""
        with self.transaction() as db:
            if self.branch_head(pending.repo, pending.branch) != pending.expected_head:
                raise Conflict(f"{pending.branch}: branch moved during commit, try again")
            db.execute(
                "UPDATE branches SET commit_id=? WHERE repo=? AND name=?",
                (pending.commit.id, pending.repo, pending.branch),
            )
            for path, entry in pending.staged:
                if entry is None:
                    db.execute(
                        "DELETE FROM staging WHERE repo=? AND branch=? AND path=? AND address IS NULL",
                        (pending.repo, pending.branch, path),
                    )
                else:
                    db.execute(
                        "DELETE FROM staging WHERE repo=? AND branch=? AND path=? AND address=? AND mtime=? "
                        "AND content_type=? AND metadata=?",
                        (pending.repo, pending.branch, path, entry.address, entry.mtime, entry.content_type,
                         json.dumps(entry.metadata, sort_keys=True)),
                    )
        return pending.commit

    # ---------------------------------------------------------------- diff and merge

    def diff_uncommitted(self, repo: str, branch: str, prefix: str = "") -> list[Difference]:
        """Staged changes against the branch head. A deletion reports size 0
        (a tombstone carries no value), as lakeFS does."""
        head = self.get_commit(repo, self.branch_head(repo, branch))
        changes = []
        for path, entry in self._iter_staging(repo, branch, prefix, True, upper_bound(prefix)):
            committed = self._tree_entry(head.tree_id, path)
            if entry is None:
                if committed is not None:
                    changes.append(Difference("removed", path, 0))
            elif committed is None:
                changes.append(Difference("added", path, entry.size_bytes))
            elif committed.identity != entry.identity:
                changes.append(Difference("changed", path, entry.size_bytes))
        return changes

    def is_dirty(self, repo: str, branch: str) -> bool:
        return bool(self.diff_uncommitted(repo, branch))

    def diff_refs(self, repo: str, left: str, right: str, diff_type: str, prefix: str = "") -> list[Difference]:
        """``two_dot``: the tree diff left → right. ``three_dot`` (lakeFS's
        default): what merging right into left would apply — right's changes
        since the merge base, plus conflicts."""
        left_commit, right_commit = self.resolve_commit(repo, left), self.resolve_commit(repo, right)
        if diff_type == "two_dot":
            if left_commit.tree_id == right_commit.tree_id:
                return []
            base, target = self.tree(left_commit.tree_id), self.tree(right_commit.tree_id)
            return list(_changes(base, target, (p for p in sorted(base.keys() | target.keys())
                                                if p.startswith(prefix))))
        if diff_type != "three_dot":
            raise BadRequest("argument type: invalid value: validation error")
        base_commit = self.merge_base(repo, right_commit.id, left_commit.id)
        base = self.tree(base_commit.tree_id) if base_commit else {}
        ours, theirs = self.tree(left_commit.tree_id), self.tree(right_commit.tree_id)
        changes = []
        for path in sorted(base.keys() | ours.keys() | theirs.keys()):
            if not path.startswith(prefix):
                continue
            outcome = _three_way(base.get(path), ours.get(path), theirs.get(path))
            if outcome == "conflict":
                changes.append(Difference("conflict", path))
            elif outcome == "take-source":
                changes.extend(_changes(ours, theirs, [path]))
        return changes

    def prepare_merge(
        self, repo: str, source: str, destination: str, *, message: str | None, metadata: dict[str, str],
        strategy: str | None, committer: str, allow_empty: bool, squash: bool,
    ) -> PendingMerge:
        """Three-way merge of ``source``'s committed state into branch
        ``destination``, built but not applied. lakeFS never fast-forwards:
        every merge is a new commit. Conflicts raise and change nothing."""
        if strategy not in (None, "", "dest-wins", "source-wins"):
            raise BadRequest("argument strategy: invalid value: validation error")
        dest_head = self.get_commit(repo, self.branch_head(repo, destination))
        try:
            source_commit = self.resolve_commit(repo, source)
        except NotFound:
            raise NotFound(f"update branch {destination}: get commit by ref {source}: not found") from None
        if self.is_dirty(repo, destination):
            raise BadRequest("uncommitted changes (dirty branch)")
        base_commit = self.merge_base(repo, source_commit.id, dest_head.id)
        if base_commit is None:
            raise BadRequest(f"update branch {destination}: no merge base")
        if source_commit.tree_id == base_commit.tree_id and not allow_empty:
            raise BadRequest(f"update branch {destination}: no changes")

        base, ours, theirs = (self.tree(c.tree_id) for c in (base_commit, dest_head, source_commit))
        merged = dict(ours)
        conflicts = []
        for path in sorted(base.keys() | ours.keys() | theirs.keys()):
            outcome = _three_way(base.get(path), ours.get(path), theirs.get(path))
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
        if conflicts:
            raise MergeConflict(f"update branch {destination}: conflict found")
        with self.transaction():
            tree_id = self._store_tree(merged)
            commit = self._insert_commit(
                repo,
                [dest_head.id] if squash else [dest_head.id, source_commit.id],
                committer,
                message or f"Merge '{source}' into '{destination}'",
                tree_id,
                {**metadata, ".lakefs.merge.strategy": strategy or "default"},
                max(dest_head.generation, source_commit.generation) + 1,
            )
        return PendingMerge(repo, destination, source_commit.id, commit, dest_head.id)

    def apply_merge(self, pending: PendingMerge) -> Commit:
        with self.transaction() as db:
            if self.branch_head(pending.repo, pending.destination) != pending.expected_head:
                raise Conflict(f"update branch {pending.destination}: branch moved during merge, try again")
            if self.is_dirty(pending.repo, pending.destination):
                raise BadRequest("uncommitted changes (dirty branch)")
            db.execute(
                "UPDATE branches SET commit_id=? WHERE repo=? AND name=?",
                (pending.commit.id, pending.repo, pending.destination),
            )
        return pending.commit

    # ---------------------------------------------------------------- action runs

    def record_action_run(self, repo: str, run: dict) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO action_runs(repo, run_id, branch, event_type, commit_id, start_time, "
                "end_time, status, hooks) VALUES (?,?,?,?,?,?,?,?,?)",
                (repo, run["run_id"], run["branch"], run["event_type"], run["commit_id"], run["start_time"],
                 run["end_time"], run["status"], json.dumps(run["hooks"])),
            )

    def list_action_runs(
        self, repo: str, after: str, amount: int, branch: str = "", commit: str = ""
    ) -> tuple[list[dict], bool]:
        self.get_repository(repo)
        rows = self.db.execute(
            "SELECT run_id, branch, event_type, commit_id, start_time, end_time, status, hooks FROM action_runs "
            "WHERE repo=? AND run_id > ? AND (? = '' OR branch = ?) AND (? = '' OR commit_id = ?) "
            "ORDER BY run_id LIMIT ?",
            (repo, after, branch, branch, commit, commit, amount + 1),
        ).fetchall()
        runs = [
            {"run_id": r[0], "branch": r[1], "event_type": r[2], "commit_id": r[3], "start_time": r[4],
             "end_time": r[5], "status": r[6], "hooks": json.loads(r[7])}
            for r in rows[:amount]
        ]
        return runs, len(rows) > amount

    def get_action_run(self, repo: str, run_id: str) -> dict:
        self.get_repository(repo)
        row = self.db.execute(
            "SELECT run_id, branch, event_type, commit_id, start_time, end_time, status, hooks FROM action_runs "
            "WHERE repo=? AND run_id=?", (repo, run_id),
        ).fetchone()
        if row is None:
            raise NotFound("not found")
        keys = ("run_id", "branch", "event_type", "commit_id", "start_time", "end_time", "status", "hooks")
        return {**dict(zip(keys, row, strict=True)), "hooks": json.loads(row[7])}


def _three_way(base: ObjectEntry | None, ours: ObjectEntry | None, theirs: ObjectEntry | None) -> str:
    """For one path: 'keep' (destination as is), 'take-source', or 'conflict'."""
    b, o, t = (x.identity if x else None for x in (base, ours, theirs))
    if t == b or t == o:
        return "keep"  # source did not change it, or both sides made the same change
    if o == b:
        return "take-source"
    return "conflict"


class _Desc(str):
    """Orders strings descending inside a min-heap (ties: greater id first)."""

    def __lt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__gt__(self, other)
