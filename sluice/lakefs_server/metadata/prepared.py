"""Commits and merges that are built but not applied yet ("prepared").

A commit is prepared, its pre-commit hooks run, then it is applied (the branch
moves). Each prepared commit or merge is recorded in ``prepared_commits`` until
it is applied, so that

- a delete or reset that arrives while a commit's hooks run can see what the
  commit in flight is about to put on the branch, and stage against that
  (:func:`in_flight_trees`); otherwise the commit would silently undo it;
- a prepared commit that is never applied (its hook failed, or the server died
  in it) does not stay readable by id: it is removed at the branch's next
  commit or merge (:func:`discard_stale`) and at start-up (:func:`sweep`).

The API holds a per-branch lock from prepare to apply, so when a branch's next
commit or merge is prepared, any earlier prepared one on it is dead.
"""

from __future__ import annotations

import sqlite3

from .records import EMPTY_TREE


def record(db: sqlite3.Connection, repo: str, branch: str, commit_id: str, expected_head: str, kind: str) -> None:
    db.execute(
        "INSERT OR REPLACE INTO prepared_commits(repo, branch, commit_id, expected_head, kind) VALUES (?,?,?,?,?)",
        (repo, branch, commit_id, expected_head, kind),
    )


def settle(db: sqlite3.Connection, repo: str, branch: str, commit_id: str) -> None:
    """The prepared commit was applied: it is an ordinary commit now."""
    db.execute("DELETE FROM prepared_commits WHERE repo=? AND branch=? AND commit_id=?", (repo, branch, commit_id))


def in_flight_trees(db: sqlite3.Connection, repo: str, branch: str, head_id: str) -> list[str]:
    """Trees of the commits prepared on ``branch`` from its current head and
    not applied yet (merges do not count: what they bring is not visible on
    the branch before they land)."""
    rows = db.execute(
        "SELECT c.tree_id FROM prepared_commits p JOIN commits c ON c.repo = p.repo AND c.id = p.commit_id "
        "WHERE p.repo=? AND p.branch=? AND p.expected_head=? AND p.kind='commit'",
        (repo, branch, head_id),
    ).fetchall()
    return [row[0] for row in rows]


def discard_stale(db: sqlite3.Connection, repo: str, branch: str) -> None:
    """Forget the commits prepared on ``branch`` that were never applied."""
    for (commit_id,) in db.execute(
        "SELECT commit_id FROM prepared_commits WHERE repo=? AND branch=?", (repo, branch)
    ).fetchall():
        _discard(db, repo, branch, commit_id)


def sweep(db: sqlite3.Connection) -> int:
    """At start-up nothing is in flight: remove every prepared commit that was
    never applied. Returns how many records were cleared."""
    rows = db.execute("SELECT repo, branch, commit_id FROM prepared_commits").fetchall()
    for repo, branch, commit_id in rows:
        _discard(db, repo, branch, commit_id)
    return len(rows)


def _discard(db: sqlite3.Connection, repo: str, branch: str, commit_id: str) -> None:
    settle(db, repo, branch, commit_id)
    if _is_referenced(db, repo, commit_id):
        return  # an identical commit that did land, or one someone built on
    tree_id = db.execute("SELECT tree_id FROM commits WHERE repo=? AND id=?", (repo, commit_id)).fetchone()
    db.execute("DELETE FROM commits WHERE repo=? AND id=?", (repo, commit_id))
    if tree_id is not None and tree_id[0] != EMPTY_TREE and not _tree_in_use(db, tree_id[0]):
        db.execute("DELETE FROM tree_entries WHERE tree_id=?", tree_id)
        db.execute("DELETE FROM trees WHERE tree_id=?", tree_id)


def _is_referenced(db: sqlite3.Connection, repo: str, commit_id: str) -> bool:
    # commit ids are hex: safe inside a LIKE pattern
    return db.execute(
        "SELECT 1 FROM branches WHERE repo=?1 AND commit_id=?2 "
        "UNION ALL SELECT 1 FROM tags WHERE repo=?1 AND commit_id=?2 "
        "UNION ALL SELECT 1 FROM prepared_commits WHERE repo=?1 AND commit_id=?2 "
        "UNION ALL SELECT 1 FROM commits WHERE repo=?1 AND parents LIKE ?3 LIMIT 1",
        (repo, commit_id, f'%"{commit_id}"%'),
    ).fetchone() is not None


def _tree_in_use(db: sqlite3.Connection, tree_id: str) -> bool:
    return db.execute("SELECT 1 FROM commits WHERE tree_id=? LIMIT 1", (tree_id,)).fetchone() is not None
