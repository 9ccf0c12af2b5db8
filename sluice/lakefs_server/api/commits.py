"""Commits, the log, diffs and merges: ``/branches/{branch}/commits``,
``/commits/{commit}``, ``/refs/{ref}/commits``, ``/branches/{branch}/diff``,
``/refs/{left}/diff/{right}`` and ``/refs/{source}/merge/{dest}``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..actions import HookEvent
from ..errors import BadRequest, NotFound, PreconditionFailed
from ..metadata.records import EMPTY_TREE, Commit, Difference, ObjectEntry, ResolvedRef
from .conventions import body_json, json_response, listing, query_amount, query_bool, string_map
from .state import ServerState

MAX_COMMIT_DATE = (2**63 - 1) // 1_000_000_000  # 2262-04-11, the last second in int64 nanoseconds


def _commit_json(commit: Commit) -> dict[str, Any]:
    return {
        "id": commit.id,
        "parents": commit.parents,
        "committer": commit.committer,
        "message": commit.message,
        "creation_date": commit.creation_date,
        "meta_range_id": "" if commit.tree_id == EMPTY_TREE else commit.tree_id,
        "metadata": commit.metadata,
        "generation": commit.generation,
        "version": 1,
    }


# -------------------------------------------------------------- commits and log


async def commit(state: ServerState, request: Request, repo: str, branch: str) -> Response:
    body = await body_json(request, "CommitCreation")
    if not isinstance(body.get("message"), str):
        raise BadRequest('request body has an error: doesn\'t match schema #/components/schemas/CommitCreation: '
                         'Error at "/message": property "message" is missing')
    metadata = string_map(body, "metadata", "CommitCreation")
    date = _commit_date(body.get("date"))
    user = state.credentials.user
    state.store.branch_head(repo, branch)
    async with state.branch_locks[(repo, branch)]:
        pending = state.store.prepare_commit(
            repo, branch, message=body["message"], metadata=metadata, committer=user,
            allow_empty=bool(body.get("allow_empty")), date=date,
        )
        event = HookEvent("pre-commit", repo, branch_id=branch, source_ref=branch,
                          commit_message=body["message"], committer=user, commit_metadata=metadata)
        try:
            await state.actions.run_pre(event, ResolvedRef(pending.expected_head, branch))
        except PreconditionFailed:
            state.store.discard_prepared(repo, branch)
            raise
        commit = state.store.apply_commit(pending)
    event.event_type, event.source_ref, event.commit_id = "post-commit", commit.id, commit.id
    state.actions.run_post(event, ResolvedRef(commit.id))
    return json_response(_commit_json(commit), 201)


def _commit_date(date: Any) -> int | None:
    """The commit's ``date`` (seconds since the epoch), within what the store
    keeps: nanoseconds in a signed 64-bit integer."""
    if date is None:
        return None
    if not isinstance(date, int) or isinstance(date, bool):
        raise BadRequest('request body has an error: Error at "/date": value must be an integer')
    if not 0 <= date <= MAX_COMMIT_DATE:
        raise BadRequest(f'request body has an error: Error at "/date": value must be between 0 and '
                         f'{MAX_COMMIT_DATE} (seconds since the epoch)')
    return date


async def get_commit(state: ServerState, request: Request, repo: str, commit: str) -> Response:
    return json_response(_commit_json(state.store.resolve_commit(repo, commit)))


def _resolve_or(state: ServerState, repo: str, ref: str, missing: str) -> str:
    try:
        return state.store.resolve(repo, ref).commit_id
    except NotFound:
        raise NotFound(missing) from None


def _since(request: Request) -> float | None:
    """The ``since`` query parameter in seconds since the epoch."""
    since = request.query_params.get("since")
    if not since:
        return None
    try:
        return datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):  # not a date, or one no clock can place (year 1 in local time)
        raise BadRequest('parameter "since" in query has an error: not an RFC 3339 date-time') from None


async def log_commits(state: ServerState, request: Request, repo: str, ref: str) -> Response:
    start = _resolve_or(state, repo, ref, "ref: not found")
    query = request.query_params
    amount, limit = query_amount(request), query_bool(request, "limit")
    after = state.store.resolve(repo, query["after"]).commit_id if query.get("after") else None
    stop_at = _resolve_or(state, repo, query["stop_at"], "stop_at: not found") if query.get("stop_at") else None
    since = _since(request)
    objects, prefixes = query.getlist("objects"), query.getlist("prefixes")
    results: list[dict[str, Any]] = []
    has_more, skipping = False, after is not None
    for commit in state.store.log(repo, start, first_parent=query_bool(request, "first_parent")):
        if since is not None and commit.creation_date < since:
            continue
        if skipping:
            skipping = commit.id != after
            continue
        if (objects or prefixes) and not _touches(state, repo, commit, objects, prefixes):
            if commit.id == stop_at:
                break
            continue
        if len(results) == amount:
            has_more = not limit
            break
        results.append(_commit_json(commit))
        if commit.id == stop_at:
            break
    return listing(results, has_more)


def _touches(state: ServerState, repo: str, commit: Commit, objects: list[str], prefixes: list[str]) -> bool:
    """Did this (single-parent) commit change any of these objects or
    anything under these prefixes? lakeFS's log filter."""
    if len(commit.parents) != 1:
        return False
    store = state.store
    parent = store.get_commit(repo, commit.parents[0])
    if parent.tree_id == commit.tree_id:
        return False

    def identity(entry: ObjectEntry | None) -> Any:
        return entry.identity if entry else None

    for path in objects:
        if identity(store.tree_entry(commit.tree_id, path)) != identity(store.tree_entry(parent.tree_id, path)):
            return True
    for prefix in prefixes:
        mine, theirs = store.tree(commit.tree_id, prefix), store.tree(parent.tree_id, prefix)
        if {p: e.identity for p, e in mine.items()} != {p: e.identity for p, e in theirs.items()}:
            return True
    return False


# -------------------------------------------------------------- diff and merge


def _diff_results(changes: list[Difference], delimiter: str, prefix: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    seen_prefixes: set[str] = set()
    for change in changes:
        cut = change.path.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            folded = change.path[: cut + len(delimiter)]
            if folded not in seen_prefixes:
                seen_prefixes.add(folded)
                results.append({"type": "prefix_changed", "path": folded, "path_type": "common_prefix"})
            continue
        item: dict[str, Any] = {"type": change.type, "path": change.path, "path_type": "object"}
        if change.size_bytes is not None:
            item["size_bytes"] = change.size_bytes
        results.append(item)
    return results


def _diff_page(request: Request, changes: list[Difference], prefix: str) -> Response:
    """A page of changes, folded at the requested delimiter."""
    results = _diff_results(changes, request.query_params.get("delimiter", ""), prefix)
    after, amount = request.query_params.get("after", ""), query_amount(request)
    page = [r for r in results if r["path"] > after and not (after.endswith("/") and r["path"].startswith(after))]
    has_more = len(page) > amount
    return listing(page[:amount], has_more, key="path")


async def diff_uncommitted(state: ServerState, request: Request, repo: str, branch: str) -> Response:
    prefix = request.query_params.get("prefix", "")
    return _diff_page(request, state.store.diff_uncommitted(repo, branch, prefix), prefix)


async def diff_refs(state: ServerState, request: Request, repo: str, left: str, right: str) -> Response:
    prefix = request.query_params.get("prefix", "")
    changes = state.store.diff_refs(repo, left, right, request.query_params.get("type", "three_dot"), prefix)
    return _diff_page(request, changes, prefix)


async def merge(state: ServerState, request: Request, repo: str, source: str, dest: str) -> Response:
    body = await body_json(request, "Merge")
    metadata = string_map(body, "metadata", "Merge")
    state.store.branch_head(repo, dest)
    async with state.branch_locks[(repo, dest)]:
        pending = state.store.prepare_merge(
            repo, source, dest, message=body.get("message"), metadata=metadata,
            strategy=body.get("strategy"), committer=state.credentials.user,
            allow_empty=bool(body.get("allow_empty") or body.get("force")),
            squash=bool(body.get("squash_merge")),
        )
        commit = pending.commit
        event = HookEvent("pre-merge", repo, branch_id=dest, source_ref=pending.source_commit_id,
                          commit_id=commit.id, commit_message=commit.message, committer=commit.committer,
                          commit_metadata=commit.metadata, merge_source=source)
        try:
            await state.actions.run_pre(event, ResolvedRef(pending.source_commit_id))
        except PreconditionFailed as exc:
            state.store.discard_prepared(repo, dest)
            raise PreconditionFailed(f"update branch {dest}: {exc.message}") from None
        state.store.apply_merge(pending)
    event.event_type, event.source_ref = "post-merge", commit.id
    state.actions.run_post(event, ResolvedRef(commit.id))
    return json_response({"reference": commit.id})


async def merge_base(state: ServerState, request: Request, repo: str, source: str, dest: str) -> Response:
    source_id = state.store.resolve(repo, source).commit_id
    dest_id = state.store.resolve(repo, dest).commit_id
    base = state.store.merge_base(repo, source_id, dest_id)
    if base is None:
        raise NotFound("no merge base")
    return json_response({"source_commit_id": source_id, "destination_commit_id": dest_id, "base_commit_id": base.id})
