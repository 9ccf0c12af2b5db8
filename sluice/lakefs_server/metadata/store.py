"""The metadata store: every operation the API performs on repositories,
branches, tags, staged objects, commits, merges and action runs, with
lakeFS's rules and messages.

Commits and merges happen in two steps so that pre-hooks can run in between,
as in lakeFS: *prepare* builds the new tree and commit record without moving
anything; *apply* moves the branch in one SQLite transaction. A crash at any
point leaves a branch before or after the operation, never half-way, and a
prepared commit that never lands is removed (:mod:`.prepared`). Deletes and
resets that arrive between the two steps outlive the commit. The server calls
this class from a single thread, which serialises all changes.

Every statement goes through ``self.db`` (tests swap it for one that fails on
cue); the row-level work lives in :mod:`.trees` and :mod:`.history`, the
path-by-path diff and merge in :mod:`.merging`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

from ..errors import BadRequest, Conflict, Forbidden, MergeConflict, NotFound
from . import history, merging, prepared, trees
from .database import open_database, transaction
from .records import EMPTY_TREE, Commit, Difference, ObjectEntry, PendingCommit, PendingMerge, Repository, ResolvedRef

_ACTION_RUN_COLUMNS = ("run_id", "branch", "event_type", "commit_id", "start_time", "end_time", "status", "hooks")
_ACTION_RUN_SQL_COLUMNS = ", ".join(_ACTION_RUN_COLUMNS)
_log = logging.getLogger("sluice.lakefs")


class MetadataStore:
    def __init__(self, path: Path):
        self.db = open_database(path)
        with transaction(self.db) as db:
            if swept := prepared.sweep(db):  # nothing is in flight at start-up
                _log.info("removed %d prepared commit(s) that were never applied", swept)

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------- repositories

    def create_repository(self, name: str, storage_namespace: str, default_branch: str) -> Repository:
        with transaction(self.db) as db:
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
            first = history.insert_commit(db, name, [], "", "Repository created", EMPTY_TREE, {}, 1, time.time_ns())
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
        with transaction(self.db) as db:
            for table in ("commits", "branches", "tags", "staging", "action_runs", "prepared_commits"):
                db.execute(f"DELETE FROM {table} WHERE repo=?", (name,))
            db.execute("DELETE FROM repositories WHERE name=?", (name,))

    # ---------------------------------------------------------------- commits and refs

    def get_commit(self, repo: str, commit_id: str) -> Commit:
        return history.get_commit(self.db, repo, commit_id)

    def resolve(self, repo: str, ref: str) -> ResolvedRef:
        self.get_repository(repo)
        return history.resolve(self.db, repo, ref)

    def resolve_commit(self, repo: str, ref: str) -> Commit:
        return self.get_commit(repo, self.resolve(repo, ref).commit_id)

    def log(self, repo: str, start_id: str, *, first_parent: bool = False) -> Iterator[Commit]:
        return history.log(self.db, repo, start_id, first_parent=first_parent)

    def merge_base(self, repo: str, left_id: str, right_id: str) -> Commit | None:
        return history.merge_base(self.db, repo, left_id, right_id)

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
        if history.commit_exists(self.db, repo, name):
            raise Conflict(f"commit ID {name}: conflict found")
        if self.db.execute("SELECT 1 FROM tags WHERE repo=? AND id=?", (repo, name)).fetchone():
            raise Conflict(f"tag ID {name}: conflict found")
        commit_id = self.resolve_source(repo, source).commit_id
        with transaction(self.db) as db:
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
        with transaction(self.db) as db:
            db.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, name))
            db.execute("DELETE FROM branches WHERE repo=? AND name=?", (repo, name))

    def reset_branch(self, repo: str, branch: str, kind: str, path: str | None) -> None:
        """Discard uncommitted changes: all of them (``reset``), one ``object``,
        or a ``common_prefix``. A reset during a commit's pre-hooks still holds
        once it lands."""
        head = self.get_commit(repo, self.branch_head(repo, branch))
        if kind in ("object", "common_prefix") and not path:
            raise BadRequest("argument path: missing path: required value: validation error")
        if kind not in ("reset", "object", "common_prefix"):
            raise BadRequest("argument type: invalid value: validation error")
        prefix = path if kind == "common_prefix" else ""
        with transaction(self.db) as db:
            in_flight = prepared.in_flight_trees(db, repo, branch, head.id)
            if kind == "object":
                trees.reset_paths(db, repo, branch, head.tree_id, in_flight, [path or ""])
            elif in_flight:
                upper = trees.upper_bound(prefix)
                staged = [p for p, _ in trees.iter_staging(db, repo, branch, prefix, True, upper)]
                trees.reset_paths(db, repo, branch, head.tree_id, in_flight, staged)
            else:  # one statement for what may be many rows
                db.execute("DELETE FROM staging WHERE repo=? AND branch=? AND substr(path, 1, length(?)) = ?",
                           (repo, branch, prefix, prefix))

    # ---------------------------------------------------------------- tags

    def create_tag(self, repo: str, tag: str, ref: str) -> str:
        self.get_repository(repo)
        if self.db.execute("SELECT 1 FROM branches WHERE repo=? AND name=?", (repo, tag)).fetchone():
            raise Conflict(f"branch name {tag}: conflict found")
        if history.commit_exists(self.db, repo, tag):
            raise Conflict(f"commit ID {tag}: conflict found")
        commit_id = self.resolve(repo, ref).commit_id
        with transaction(self.db) as db:
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
        with transaction(self.db) as db:
            db.execute("DELETE FROM tags WHERE repo=? AND id=?", (repo, tag))

    # ---------------------------------------------------------------- objects

    def stage_object(self, repo: str, branch: str, entry: ObjectEntry) -> None:
        with transaction(self.db) as db:
            trees.stage_entry(db, repo, branch, entry)

    def delete_objects(self, repo: str, branch: str, paths: Iterable[str]) -> None:
        """Stage deletions; deleting what does not exist is a no-op (as in lakeFS).
        A deletion during a commit's pre-hooks still holds once it lands."""
        head = self.get_commit(repo, self.branch_head(repo, branch))
        with transaction(self.db) as db:
            in_flight = prepared.in_flight_trees(db, repo, branch, head.id)
            trees.stage_deletions(db, repo, branch, head.tree_id, in_flight, paths)

    def get_entry(self, repo: str, ref: ResolvedRef, path: str) -> ObjectEntry | None:
        if ref.branch is not None:
            row = self.db.execute(
                f"SELECT {trees.ENTRY_COLUMNS} FROM staging WHERE repo=? AND branch=? AND path=?",
                (repo, ref.branch, path),
            ).fetchone()
            if row is not None:
                return None if row[1] is None else trees.entry_from_row(row)
        return trees.tree_entry(self.db, self.get_commit(repo, ref.commit_id).tree_id, path)

    def iter_entries(
        self, repo: str, ref: ResolvedRef, lower: str = "", inclusive: bool = True, upper: str | None = None
    ) -> Iterator[ObjectEntry]:
        """Objects visible at ``ref`` in path order: the commit's tree, overlaid
        with the branch's staged writes and deletions."""
        tree = trees.iter_tree(self.db, self.get_commit(repo, ref.commit_id).tree_id, lower, inclusive, upper)
        if ref.branch is None:
            yield from tree
            return
        yield from trees.overlay(tree, trees.iter_staging(self.db, repo, ref.branch, lower, inclusive, upper))

    def list_objects(
        self, repo: str, ref: ResolvedRef, prefix: str, after: str, delimiter: str, amount: int
    ) -> tuple[list[ObjectEntry | str], bool]:
        """A page of objects under ``prefix``, after ``after`` (exclusive); with
        a delimiter, deeper paths fold into common prefixes (plain strings)."""
        return trees.list_page(partial(self.iter_entries, repo, ref), prefix, after, delimiter, amount)

    def tree(self, tree_id: str, prefix: str = "") -> dict[str, ObjectEntry]:
        return trees.tree(self.db, tree_id, prefix)

    def tree_entry(self, tree_id: str, path: str) -> ObjectEntry | None:
        return trees.tree_entry(self.db, tree_id, path)

    # ---------------------------------------------------------------- commit

    def prepare_commit(
        self, repo: str, branch: str, *, message: str, metadata: dict[str, str], committer: str,
        allow_empty: bool, date: int | None = None,
    ) -> PendingCommit:
        """Build the commit of everything staged on ``branch`` (not applied yet)."""
        head = self.get_commit(repo, self.branch_head(repo, branch))
        staged = tuple(trees.iter_staging(self.db, repo, branch))
        committed = self.tree(head.tree_id)
        entries = dict(committed)
        for path, entry in staged:
            if entry is None:
                entries.pop(path, None)
            else:
                entries[path] = entry
        if not allow_empty and next(merging.changes(committed, entries, {p for p, _ in staged}), None) is None:
            raise BadRequest("commit: no changes")
        creation_ns = time.time_ns() if date is None else date * 1_000_000_000
        with transaction(self.db) as db:
            prepared.discard_stale(db, repo, branch)
            tree_id = trees.store_tree(db, entries)
            commit = history.insert_commit(db, repo, [head.id], committer, message, tree_id, metadata,
                                           head.generation + 1, creation_ns)
            prepared.record(db, repo, branch, commit.id, head.id, "commit")
        return PendingCommit(repo, branch, commit, head.id, staged)

    def discard_prepared(self, repo: str, branch: str) -> None:
        """A pre-hook refused the commit or merge prepared on ``branch``: it
        will never be applied, so it must not stay readable by id."""
        with transaction(self.db) as db:
            prepared.discard_stale(db, repo, branch)

    def apply_commit(self, pending: PendingCommit) -> Commit:
        """Move the branch to the prepared commit and drop the staged entries it
        took. Writes staged after ``prepare_commit`` stay staged (lakeFS seals
        the staging area in the same way)."""
        with transaction(self.db) as db:
            if self.branch_head(pending.repo, pending.branch) != pending.expected_head:
                raise Conflict(f"{pending.branch}: branch moved during commit, try again")
            db.execute(
                "UPDATE branches SET commit_id=? WHERE repo=? AND name=?",
                (pending.commit.id, pending.repo, pending.branch),
            )
            prepared.settle(db, pending.repo, pending.branch, pending.commit.id)
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
        """Staged changes against the branch head (see :func:`.merging.uncommitted_changes`)."""
        head = self.get_commit(repo, self.branch_head(repo, branch))
        staged = trees.iter_staging(self.db, repo, branch, prefix, True, trees.upper_bound(prefix))
        return merging.uncommitted_changes(staged, partial(self.tree_entry, head.tree_id))

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
            return list(merging.changes(base, target, (p for p in sorted(base.keys() | target.keys())
                                                       if p.startswith(prefix))))
        if diff_type != "three_dot":
            raise BadRequest("argument type: invalid value: validation error")
        base_commit = self.merge_base(repo, right_commit.id, left_commit.id)
        base = self.tree(base_commit.tree_id) if base_commit else {}
        return merging.three_dot_diff(base, self.tree(left_commit.tree_id), self.tree(right_commit.tree_id), prefix)

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
        merged, conflicts = merging.merge_trees(base, ours, theirs, strategy)
        if conflicts:
            raise MergeConflict(f"update branch {destination}: conflict found")
        with transaction(self.db) as db:
            prepared.discard_stale(db, repo, destination)
            tree_id = trees.store_tree(db, merged)
            commit = history.insert_commit(
                db,
                repo,
                [dest_head.id] if squash else [dest_head.id, source_commit.id],
                committer,
                message or f"Merge '{source}' into '{destination}'",
                tree_id,
                {**metadata, ".lakefs.merge.strategy": strategy or "default"},
                max(dest_head.generation, source_commit.generation) + 1,
                time.time_ns(),
            )
            prepared.record(db, repo, destination, commit.id, dest_head.id, "merge")
        return PendingMerge(repo, destination, source_commit.id, commit, dest_head.id)

    def apply_merge(self, pending: PendingMerge) -> Commit:
        with transaction(self.db) as db:
            if self.branch_head(pending.repo, pending.destination) != pending.expected_head:
                raise Conflict(f"update branch {pending.destination}: branch moved during merge, try again")
            if self.is_dirty(pending.repo, pending.destination):
                raise BadRequest("uncommitted changes (dirty branch)")
            db.execute(
                "UPDATE branches SET commit_id=? WHERE repo=? AND name=?",
                (pending.commit.id, pending.repo, pending.destination),
            )
            prepared.settle(db, pending.repo, pending.destination, pending.commit.id)
            # Not dirty: whatever is staged only repeats the old head (e.g. a
            # reset during a commit whose hook then failed); against the new
            # head it would be a change nobody made.
            db.execute("DELETE FROM staging WHERE repo=? AND branch=?", (pending.repo, pending.destination))
        return pending.commit

    # ---------------------------------------------------------------- action runs

    def record_action_run(self, repo: str, run: dict) -> None:
        with transaction(self.db) as db:
            db.execute(
                f"INSERT OR REPLACE INTO action_runs(repo, {_ACTION_RUN_SQL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                (repo, run["run_id"], run["branch"], run["event_type"], run["commit_id"], run["start_time"],
                 run["end_time"], run["status"], json.dumps(run["hooks"])),
            )

    def list_action_runs(
        self, repo: str, after: str, amount: int, branch: str = "", commit: str = ""
    ) -> tuple[list[dict], bool]:
        self.get_repository(repo)
        rows = self.db.execute(
            f"SELECT {_ACTION_RUN_SQL_COLUMNS} FROM action_runs "
            "WHERE repo=? AND run_id > ? AND (? = '' OR branch = ?) AND (? = '' OR commit_id = ?) "
            "ORDER BY run_id LIMIT ?",
            (repo, after, branch, branch, commit, commit, amount + 1),
        ).fetchall()
        return [_action_run_from_row(r) for r in rows[:amount]], len(rows) > amount

    def get_action_run(self, repo: str, run_id: str) -> dict:
        self.get_repository(repo)
        row = self.db.execute(
            f"SELECT {_ACTION_RUN_SQL_COLUMNS} FROM action_runs WHERE repo=? AND run_id=?", (repo, run_id),
        ).fetchone()
        if row is None:
            raise NotFound("not found")
        return _action_run_from_row(row)


def _action_run_from_row(row: tuple) -> dict:
    return {**dict(zip(_ACTION_RUN_COLUMNS, row, strict=True)), "hooks": json.loads(row[-1])}
