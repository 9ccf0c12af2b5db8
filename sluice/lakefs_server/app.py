"""The lakeFS REST API (``/api/v1``) over :class:`MetadataStore` and
:class:`BlobStore`, as an ASGI app.

All metadata work runs on the event loop's thread, so operations never
interleave except where they await (request bodies, hooks); commits and
merges take a per-branch lock across their hooks, as lakeFS locks a branch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import logging
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sluice.config import BRANCH_NAME, REPOSITORY_NAME

from .actions import ACTIONS_PREFIX, Action, ActionFileError, ActionRunner, HookEvent, parse_action
from .blobs import BlobStore, BlobWriter
from .errors import APIError, BadRequest, MergeConflict, NotFound, PreconditionFailed, RangeNotSatisfiable
from .store import EMPTY_TREE, Commit, Difference, MetadataStore, ObjectEntry, ResolvedRef, validate_path
from .ui import ui_routes

log = logging.getLogger("sluice.lakefs")

API = "/api/v1"
VERSION = "1.88.0"  # the lakeFS API version this server follows
MAX_PER_PAGE = 1000
DEFAULT_AMOUNT = 100
MAX_DELETE_PATHS = 1000
READ_CHUNK = 1 << 20
_USER_META = "x-lakefs-meta-"
_INLINE_TYPES = ("text/plain", "application/json", "image/")


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    user: str = "admin"


# ------------------------------------------------------------------ helpers


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type="application/json",
                    headers={"X-Content-Type-Options": "nosniff"})


def _error(status: int, message: str, **extra: Any) -> Response:
    return _json({"message": message, **extra}, status)


def _bool(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadRequest(f'parameter "{name}" in query has an error: value {value}: an invalid boolean: invalid syntax')


def _amount(request: Request) -> int:
    raw = request.query_params.get("amount")
    if raw in (None, ""):
        return DEFAULT_AMOUNT
    try:
        amount = int(raw)
    except ValueError:
        raise BadRequest(f'parameter "amount" in query has an error: value {raw}: an invalid integer') from None
    if amount > MAX_PER_PAGE:
        raise BadRequest(f'parameter "amount" in query has an error: number must be at most {MAX_PER_PAGE}')
    if amount < -1:
        raise BadRequest('parameter "amount" in query has an error: number must be at least -1')
    return DEFAULT_AMOUNT if amount in (0, -1) else amount


def _pagination(has_more: bool, results: int, last: str) -> dict[str, Any]:
    return {"has_more": has_more, "next_offset": last if has_more else "", "results": results,
            "max_per_page": MAX_PER_PAGE}


def _listing(results: list[dict[str, Any]], has_more: bool, key: str = "id") -> Response:
    """A lakeFS list response; ``next_offset`` is the last item's ``key``."""
    return _json({"pagination": _pagination(has_more, len(results), results[-1][key] if results else ""),
                  "results": results})


async def _body_json(request: Request, schema: str) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body has an error: failed to decode request body: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body has an error: doesn't match schema #/components/schemas/{schema}")
    return body


def _string_map(body: dict[str, Any], key: str, schema: str) -> dict[str, str]:
    value = body.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(
            f"request body has an error: doesn't match schema #/components/schemas/{schema}: "
            f'Error at "/{key}": value must be a map of strings'
        )
    return {str(k): v for k, v in value.items()}


def _require_query(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if value is None:
        raise BadRequest(f'parameter "{name}" in query has an error: value is required but missing')
    if value == "":
        raise BadRequest(f'parameter "{name}" in query has an error: empty value is not allowed')
    return value


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


def _page_diff(request: Request, results: list[dict[str, Any]]) -> Response:
    after, amount = request.query_params.get("after", ""), _amount(request)
    page = [r for r in results if r["path"] > after and not (after.endswith("/") and r["path"].startswith(after))]
    has_more = len(page) > amount
    return _listing(page[:amount], has_more, key="path")


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` → inclusive (start, end)."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        raise RangeNotSatisfiable("Requested Range Not Satisfiable", -1)
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last n bytes
        count = int(last)
        if count == 0 or size == 0:
            raise RangeNotSatisfiable("Requested Range Not Satisfiable", size)
        return max(size - count, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start > size - 1 or (last and int(last) < start):
        raise RangeNotSatisfiable("Requested Range Not Satisfiable", size)
    return start, end


def _read_file(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        while length > 0:
            chunk = handle.read(min(READ_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


# ------------------------------------------------------------------ auth


class BasicAuth:
    """HTTP Basic against one access key; only health and setup are open."""

    OPEN = {f"{API}/healthcheck", f"{API}/setup_lakefs"}

    def __init__(self, app: ASGIApp, credentials: Credentials):
        self.app = app
        expected = f"{credentials.access_key_id}:{credentials.secret_access_key}".encode()
        self.expected = b"Basic " + base64.b64encode(expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.OPEN:
            header = dict(scope["headers"]).get(b"authorization", b"")
            if not self._valid(header):
                response = _error(401, "error authenticating request")
                if not scope["path"].startswith(API):  # a browser on the web view: ask for the key
                    response.headers["WWW-Authenticate"] = 'Basic realm="lakeFS"'
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _valid(self, header: bytes) -> bool:
        if not header.startswith(b"Basic "):
            return False
        try:
            base64.b64decode(header[6:], validate=True)
        except (binascii.Error, ValueError):
            return False
        return secrets.compare_digest(header, self.expected)


# ------------------------------------------------------------------ the API


class LakeFSAPI:
    def __init__(self, data_dir: Path, credentials: Credentials):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.credentials = credentials
        self.store = MetadataStore(data_dir / "metadata.sqlite3")
        self.blobs = BlobStore(data_dir)
        self.actions = ActionRunner(self._load_actions, self.store.record_action_run)
        self._branch_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    # -------------------------------------------------------------- plumbing

    def _load_actions(self, repo: str, ref: ResolvedRef) -> list[Action]:
        actions, names = [], set()
        objects, _ = self.store.list_objects(repo, ref, ACTIONS_PREFIX, "", "/", MAX_PER_PAGE)
        for entry in objects:
            path = entry if isinstance(entry, str) else entry.path
            if isinstance(entry, str):
                raise ActionFileError(f"action file {path}: is a folder, not an action file")
            action = parse_action(path, self.blobs.path_of(entry.address).read_bytes())
            if action.name in names:
                raise ActionFileError(f"action file {path}: duplicate action name {action.name!r}")
            names.add(action.name)
            actions.append(action)
        return actions

    def _namespace(self, repo: str) -> str:
        return self.store.get_repository(repo).storage_namespace.rstrip("/")

    @staticmethod
    def _object_stats(namespace: str, entry: ObjectEntry, with_metadata: bool = True) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "path": entry.path,
            "path_type": "object",
            "physical_address": f"{namespace}/data/{entry.address}",
            "checksum": entry.checksum,
            "size_bytes": entry.size_bytes,
            "mtime": entry.mtime,
            "content_type": entry.content_type,
        }
        if with_metadata:
            stats["metadata"] = entry.metadata
        return stats

    def routes(self) -> list[Route]:
        r = f"{API}/repositories/{{repo}}"
        table: list[tuple[str, str, Callable[..., Awaitable[Response]]]] = [
            ("GET", f"{API}/healthcheck", self.healthcheck),
            ("GET", f"{API}/setup_lakefs", self.setup_state),
            ("GET", f"{API}/config", self.config),
            ("GET", f"{API}/config/version", self.config_version),
            ("GET", f"{API}/config/storage", self.config_storage),
            ("GET", f"{API}/user", self.current_user),
            ("GET", f"{API}/repositories", self.list_repositories),
            ("POST", f"{API}/repositories", self.create_repository),
            ("GET", r, self.get_repository),
            ("DELETE", r, self.delete_repository),
            ("GET", f"{r}/metadata", self.repository_metadata),
            ("GET", f"{r}/branches", self.list_branches),
            ("POST", f"{r}/branches", self.create_branch),
            ("GET", f"{r}/branches/{{branch}}", self.get_branch),
            ("DELETE", f"{r}/branches/{{branch}}", self.delete_branch),
            ("PUT", f"{r}/branches/{{branch}}", self.reset_branch),
            ("GET", f"{r}/branches/{{branch}}/diff", self.diff_uncommitted),
            ("POST", f"{r}/branches/{{branch}}/commits", self.commit),
            ("POST", f"{r}/branches/{{branch}}/objects", self.upload_object),
            ("DELETE", f"{r}/branches/{{branch}}/objects", self.delete_object),
            ("POST", f"{r}/branches/{{branch}}/objects/delete", self.delete_objects),
            ("GET", f"{r}/refs/{{ref}}/objects", self.get_object),
            ("HEAD", f"{r}/refs/{{ref}}/objects", self.head_object),
            ("GET", f"{r}/refs/{{ref}}/objects/stat", self.stat_object),
            ("GET", f"{r}/refs/{{ref}}/objects/ls", self.list_objects),
            ("GET", f"{r}/refs/{{ref}}/commits", self.log_commits),
            ("GET", f"{r}/refs/{{left}}/diff/{{right}}", self.diff_refs),
            ("POST", f"{r}/refs/{{source}}/merge/{{dest}}", self.merge),
            ("GET", f"{r}/refs/{{source}}/merge/{{dest}}", self.merge_base),
            ("GET", f"{r}/commits/{{commit}}", self.get_commit),
            ("GET", f"{r}/tags", self.list_tags),
            ("POST", f"{r}/tags", self.create_tag),
            ("GET", f"{r}/tags/{{tag}}", self.get_tag),
            ("DELETE", f"{r}/tags/{{tag}}", self.delete_tag),
            ("GET", f"{r}/actions/runs", self.list_action_runs),
            ("GET", f"{r}/actions/runs/{{run_id}}", self.get_action_run),
            ("GET", f"{r}/actions/runs/{{run_id}}/hooks", self.list_run_hooks),
        ]
        by_path: dict[str, dict[str, Callable[..., Awaitable[Response]]]] = defaultdict(dict)
        for method, path, handler in table:
            by_path[path][method] = handler
        return [Route(path, self._dispatch(handlers), methods=list(handlers)) for path, handlers in by_path.items()]

    def _dispatch(self, handlers: dict[str, Callable[..., Awaitable[Response]]]) -> Callable:
        async def endpoint(request: Request) -> Response:
            handler = handlers[request.method]
            try:
                return await handler(request, **request.path_params)
            except MergeConflict as exc:
                return _error(exc.status, exc.message, reference="")
            except RangeNotSatisfiable as exc:
                headers = {"Content-Range": f"bytes */{exc.size}"} if exc.size >= 0 else {}
                response = _error(exc.status, exc.message)
                response.headers.update(headers)
                return response
            except APIError as exc:
                if request.method == "HEAD":
                    return Response(status_code=exc.status)
                return _error(exc.status, exc.message)

        return endpoint

    # -------------------------------------------------------------- setup and config

    async def healthcheck(self, request: Request) -> Response:
        return Response(status_code=204)

    async def setup_state(self, request: Request) -> Response:
        return _json({"state": "initialized", "comm_prefs_missing": False,
                      "login_config": {"RBAC": "none", "login_cookie_names": ["internal_auth_session"],
                                       "login_failed_message": "The credentials don't match.",
                                       "logout_url": "/logout"}})

    def _storage_config(self) -> dict[str, Any]:
        return {
            "blockstore_type": "local",
            "blockstore_namespace_example": "local://example-bucket/",
            "blockstore_namespace_ValidityRegex": "^local://",
            "default_namespace_prefix": "local://",
            "pre_sign_support": False,
            "pre_sign_support_ui": False,
            "import_support": False,
            "import_validity_regex": "^local://",
            "pre_sign_multipart_upload": False,
            "blockstore_id": "",
            "blockstore_description": "",
        }

    async def config(self, request: Request) -> Response:
        return _json({"version_config": {"version": VERSION, "version_context": "lakeFS",
                                         "upgrade_recommended": False},
                      "storage_config": self._storage_config(), "storage_config_list": [],
                      "ui_config": {}, "capabilities_config": {}})

    async def config_version(self, request: Request) -> Response:
        return _json({"version": VERSION, "upgrade_recommended": False})

    async def config_storage(self, request: Request) -> Response:
        return _json(self._storage_config())

    async def current_user(self, request: Request) -> Response:
        return _json({"user": {"id": self.credentials.user, "creation_date": 0,
                               "friendly_name": self.credentials.user}})

    # -------------------------------------------------------------- repositories

    def _repository_json(self, repo: str) -> dict[str, Any]:
        r = self.store.get_repository(repo)
        return {"id": r.name, "creation_date": r.creation_date, "default_branch": r.default_branch,
                "storage_id": "", "storage_namespace": r.storage_namespace, "read_only": r.read_only}

    async def list_repositories(self, request: Request) -> Response:
        repos, has_more = self.store.list_repositories(
            request.query_params.get("prefix", ""), request.query_params.get("after", ""), _amount(request)
        )
        return _listing([self._repository_json(r.name) for r in repos], has_more)

    async def create_repository(self, request: Request) -> Response:
        body = await _body_json(request, "RepositoryCreation")
        name, namespace = body.get("name"), body.get("storage_namespace")
        default_branch = body.get("default_branch") or "main"
        if not isinstance(name, str) or not REPOSITORY_NAME.match(name):
            raise BadRequest(
                "request body has an error: doesn't match schema #/components/schemas/RepositoryCreation: "
                f'Error at "/name": string doesn\'t match the regular expression "{REPOSITORY_NAME.pattern}"'
            )
        if not isinstance(namespace, str) or not re.match(r"^(s3|gs|https?|mem|local|transient)://.*$", namespace):
            raise BadRequest(
                "request body has an error: doesn't match schema #/components/schemas/RepositoryCreation: "
                'Error at "/storage_namespace": string doesn\'t match the regular expression '
                '"^(s3|gs|https?|mem|local|transient)://.*$"'
            )
        if not namespace.startswith("local://"):
            raise BadRequest("failed to match required regex ^local://: invalid namespace")
        if not BRANCH_NAME.match(default_branch):
            raise BadRequest("argument default_branch: branch id: invalid value: validation error")
        self.store.create_repository(name, namespace, default_branch)
        return _json(self._repository_json(name), 201)

    async def get_repository(self, request: Request, repo: str) -> Response:
        return _json(self._repository_json(repo))

    async def delete_repository(self, request: Request, repo: str) -> Response:
        self.store.delete_repository(repo)
        return Response(status_code=204)

    async def repository_metadata(self, request: Request, repo: str) -> Response:
        self.store.get_repository(repo)
        return _json({})

    # -------------------------------------------------------------- branches

    async def list_branches(self, request: Request, repo: str) -> Response:
        rows, has_more = self.store.list_branches(
            repo, request.query_params.get("prefix", ""), request.query_params.get("after", ""), _amount(request),
            show_hidden=_bool(request, "show_hidden"),
        )
        return _listing([{"id": name, "commit_id": commit_id} for name, commit_id in rows], has_more)

    async def create_branch(self, request: Request, repo: str) -> Response:
        body = await _body_json(request, "BranchCreation")
        name, source = body.get("name"), body.get("source")
        if not isinstance(name, str) or not isinstance(source, str):
            raise BadRequest("request body has an error: doesn't match schema #/components/schemas/BranchCreation: "
                             "properties name and source are required")
        if not BRANCH_NAME.match(name):
            raise BadRequest(
                "argument branch: branch id: invalid value: validation error: branch id must consist of letters, "
                "digits, underscores and dashes, and cannot start with a dash"
            )
        source_ref = self.store.resolve_source(repo, source)
        event = HookEvent("pre-create-branch", repo, branch_id=name, source_ref=source,
                          commit_id=source_ref.commit_id)
        await self.actions.run_pre(event, source_ref)
        commit_id = self.store.create_branch(repo, name, source, hidden=bool(body.get("hidden")))
        event.event_type = "post-create-branch"
        self.actions.run_post(event, source_ref)
        return PlainTextResponse(commit_id, status_code=201)

    async def get_branch(self, request: Request, repo: str, branch: str) -> Response:
        return _json({"id": branch, "commit_id": self.store.branch_head(repo, branch)})

    async def delete_branch(self, request: Request, repo: str, branch: str) -> Response:
        head = self.store.branch_head(repo, branch)
        event = HookEvent("pre-delete-branch", repo, branch_id=branch, source_ref=head, commit_id=head)
        if branch != self.store.get_repository(repo).default_branch:
            await self.actions.run_pre(event, ResolvedRef(head))
        self.store.delete_branch(repo, branch)
        self._branch_locks.pop((repo, branch), None)
        event.event_type = "post-delete-branch"
        self.actions.run_post(event, ResolvedRef(head))
        return Response(status_code=204)

    async def reset_branch(self, request: Request, repo: str, branch: str) -> Response:
        body = await _body_json(request, "ResetCreation")
        self.store.reset_branch(repo, branch, str(body.get("type", "")), body.get("path"))
        return Response(status_code=204)

    async def diff_uncommitted(self, request: Request, repo: str, branch: str) -> Response:
        prefix, delimiter = request.query_params.get("prefix", ""), request.query_params.get("delimiter", "")
        changes = self.store.diff_uncommitted(repo, branch, prefix)
        return _page_diff(request, _diff_results(changes, delimiter, prefix))

    # -------------------------------------------------------------- commits

    async def commit(self, request: Request, repo: str, branch: str) -> Response:
        body = await _body_json(request, "CommitCreation")
        if not isinstance(body.get("message"), str):
            raise BadRequest('request body has an error: doesn\'t match schema #/components/schemas/CommitCreation: '
                             'Error at "/message": property "message" is missing')
        metadata = _string_map(body, "metadata", "CommitCreation")
        date = body.get("date")
        if date is not None and not isinstance(date, int):
            raise BadRequest('request body has an error: Error at "/date": value must be an integer')
        self.store.branch_head(repo, branch)
        async with self._branch_locks[(repo, branch)]:
            pending = self.store.prepare_commit(
                repo, branch, message=body["message"], metadata=metadata, committer=self.credentials.user,
                allow_empty=bool(body.get("allow_empty")), date=date,
            )
            event = HookEvent("pre-commit", repo, branch_id=branch, source_ref=branch,
                              commit_message=body["message"], committer=self.credentials.user,
                              commit_metadata=metadata)
            await self.actions.run_pre(event, ResolvedRef(pending.expected_head, branch))
            commit = self.store.apply_commit(pending)
        event.event_type, event.source_ref, event.commit_id = "post-commit", commit.id, commit.id
        self.actions.run_post(event, ResolvedRef(commit.id))
        return _json(_commit_json(commit), 201)

    async def get_commit(self, request: Request, repo: str, commit: str) -> Response:
        return _json(_commit_json(self.store.resolve_commit(repo, commit)))

    async def log_commits(self, request: Request, repo: str, ref: str) -> Response:
        try:
            start = self.store.resolve(repo, ref).commit_id
        except NotFound:
            raise NotFound("ref: not found") from None
        query = request.query_params
        amount, limit = _amount(request), _bool(request, "limit")
        after = self.store.resolve(repo, query["after"]).commit_id if query.get("after") else None
        stop_at = None
        if query.get("stop_at"):
            try:
                stop_at = self.store.resolve(repo, query["stop_at"]).commit_id
            except NotFound:
                raise NotFound("stop_at: not found") from None
        since = None
        if query.get("since"):
            try:
                since = datetime.fromisoformat(query["since"].replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest('parameter "since" in query has an error: not an RFC 3339 date-time') from None
        objects, prefixes = query.getlist("objects"), query.getlist("prefixes")
        results: list[dict[str, Any]] = []
        has_more, skipping = False, after is not None
        for commit in self.store.log(repo, start, first_parent=_bool(request, "first_parent")):
            if since is not None and commit.creation_date < since.timestamp():
                continue
            if skipping:
                skipping = commit.id != after
                continue
            if (objects or prefixes) and not self._touches(repo, commit, objects, prefixes):
                if commit.id == stop_at:
                    break
                continue
            if len(results) == amount:
                has_more = not limit
                break
            results.append(_commit_json(commit))
            if commit.id == stop_at:
                break
        return _listing(results, has_more)

    def _touches(self, repo: str, commit: Commit, objects: list[str], prefixes: list[str]) -> bool:
        """Did this (single-parent) commit change any of these objects or
        anything under these prefixes? lakeFS's log filter."""
        if len(commit.parents) != 1:
            return False
        parent = self.store.get_commit(repo, commit.parents[0])
        if parent.tree_id == commit.tree_id:
            return False

        def identity(entry: ObjectEntry | None) -> Any:
            return entry.identity if entry else None

        for path in objects:
            if identity(self.store.tree_entry(commit.tree_id, path)) != identity(
                    self.store.tree_entry(parent.tree_id, path)):
                return True
        for prefix in prefixes:
            mine, theirs = self.store.tree(commit.tree_id, prefix), self.store.tree(parent.tree_id, prefix)
            if {p: e.identity for p, e in mine.items()} != {p: e.identity for p, e in theirs.items()}:
                return True
        return False

    # -------------------------------------------------------------- diff and merge

    async def diff_refs(self, request: Request, repo: str, left: str, right: str) -> Response:
        prefix, delimiter = request.query_params.get("prefix", ""), request.query_params.get("delimiter", "")
        changes = self.store.diff_refs(repo, left, right, request.query_params.get("type", "three_dot"), prefix)
        return _page_diff(request, _diff_results(changes, delimiter, prefix))

    async def merge(self, request: Request, repo: str, source: str, dest: str) -> Response:
        body = await _body_json(request, "Merge")
        metadata = _string_map(body, "metadata", "Merge")
        self.store.branch_head(repo, dest)
        async with self._branch_locks[(repo, dest)]:
            pending = self.store.prepare_merge(
                repo, source, dest, message=body.get("message"), metadata=metadata,
                strategy=body.get("strategy"), committer=self.credentials.user,
                allow_empty=bool(body.get("allow_empty") or body.get("force")),
                squash=bool(body.get("squash_merge")),
            )
            commit = pending.commit
            event = HookEvent("pre-merge", repo, branch_id=dest, source_ref=pending.source_commit_id,
                              commit_id=commit.id, commit_message=commit.message, committer=commit.committer,
                              commit_metadata=commit.metadata, merge_source=source)
            try:
                await self.actions.run_pre(event, ResolvedRef(pending.source_commit_id))
            except PreconditionFailed as exc:
                raise PreconditionFailed(f"update branch {dest}: {exc.message}") from None
            self.store.apply_merge(pending)
        event.event_type, event.source_ref = "post-merge", commit.id
        self.actions.run_post(event, ResolvedRef(commit.id))
        return _json({"reference": commit.id})

    async def merge_base(self, request: Request, repo: str, source: str, dest: str) -> Response:
        source_id = self.store.resolve(repo, source).commit_id
        dest_id = self.store.resolve(repo, dest).commit_id
        base = self.store.merge_base(repo, source_id, dest_id)
        if base is None:
            raise NotFound("no merge base")
        return _json({"source_commit_id": source_id, "destination_commit_id": dest_id, "base_commit_id": base.id})

    # -------------------------------------------------------------- tags

    async def list_tags(self, request: Request, repo: str) -> Response:
        rows, has_more = self.store.list_tags(
            repo, request.query_params.get("prefix", ""), request.query_params.get("after", ""), _amount(request)
        )
        return _listing([{"id": tag, "commit_id": commit_id} for tag, commit_id in rows], has_more)

    async def create_tag(self, request: Request, repo: str) -> Response:
        body = await _body_json(request, "TagCreation")
        tag, ref = body.get("id"), body.get("ref")
        if not isinstance(tag, str) or not isinstance(ref, str):
            raise BadRequest("request body has an error: doesn't match schema #/components/schemas/TagCreation: "
                             "properties id and ref are required")
        if not _valid_tag(tag):
            raise BadRequest("argument tagID: tag id: invalid value: validation error")
        commit_id = self.store.resolve(repo, ref).commit_id
        event = HookEvent("pre-create-tag", repo, source_ref=commit_id, commit_id=commit_id, tag_id=tag)
        await self.actions.run_pre(event, ResolvedRef(commit_id))
        commit_id = self.store.create_tag(repo, tag, ref)
        event.event_type = "post-create-tag"
        self.actions.run_post(event, ResolvedRef(commit_id))
        return _json({"id": tag, "commit_id": commit_id}, 201)

    async def get_tag(self, request: Request, repo: str, tag: str) -> Response:
        return _json({"id": tag, "commit_id": self.store.get_tag(repo, tag)})

    async def delete_tag(self, request: Request, repo: str, tag: str) -> Response:
        commit_id = self.store.get_tag(repo, tag)
        event = HookEvent("pre-delete-tag", repo, source_ref=commit_id, commit_id=commit_id, tag_id=tag)
        await self.actions.run_pre(event, ResolvedRef(commit_id))
        self.store.delete_tag(repo, tag)
        event.event_type = "post-delete-tag"
        self.actions.run_post(event, ResolvedRef(commit_id))
        return Response(status_code=204)

    # -------------------------------------------------------------- objects

    async def upload_object(self, request: Request, repo: str, branch: str) -> Response:
        path = validate_path(_require_query(request, "path"))
        self.store.get_repository(repo)
        self.store.branch_head(repo, branch, missing=f"branch '{branch}' not found")
        if request.headers.get("if-none-match") == "*" and self.store.get_entry(
            repo, ResolvedRef(self.store.branch_head(repo, branch), branch), path
        ):
            raise PreconditionFailed("path already exists")
        content_type = request.headers.get("content-type") or "application/octet-stream"
        metadata = {k[len(_USER_META):]: v for k, v in request.headers.items() if k.startswith(_USER_META)}
        writer = self.blobs.writer()
        try:
            if content_type.startswith("multipart/form-data"):
                content_type = await self._receive_multipart(request, writer)
            else:
                async for chunk in request.stream():
                    writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        blob = writer.finish()
        # The branch may have been deleted while the body streamed in.
        self.store.branch_head(repo, branch, missing=f"branch '{branch}' not found")
        entry = ObjectEntry(path, blob.address, blob.checksum, blob.size, int(time.time()), content_type, metadata)
        self.store.stage_object(repo, branch, entry)
        return _json(self._object_stats(self._namespace(repo), entry), 201)

    @staticmethod
    async def _receive_multipart(request: Request, writer: BlobWriter) -> str:
        """The generated client uploads as multipart with a ``content`` field
        (lakeFS accepts both); returns that part's content type."""
        async with request.form(max_part_size=1 << 20) as form:
            part = form.get("content")
            if part is None or isinstance(part, str):
                raise BadRequest("multipart upload: missing file field 'content'")
            while chunk := await part.read(READ_CHUNK):
                writer.write(chunk)
            return part.content_type or "application/octet-stream"

    async def delete_object(self, request: Request, repo: str, branch: str) -> Response:
        path = validate_path(_require_query(request, "path"))
        self.store.delete_objects(repo, branch, [path])
        return Response(status_code=204)

    async def delete_objects(self, request: Request, repo: str, branch: str) -> Response:
        body = await _body_json(request, "PathList")
        paths = body.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise BadRequest('request body has an error: doesn\'t match schema #/components/schemas/PathList: '
                             'Error at "/paths": property "paths" is missing')
        if len(paths) > MAX_DELETE_PATHS:
            raise BadRequest(f"request size exceeded, max paths is set to {MAX_DELETE_PATHS}")
        try:
            self.store.delete_objects(repo, branch, [p for p in paths if p])
        except NotFound:
            pass  # lakeFS ignores not-found in batch deletes, a missing branch included
        return _json({"errors": []})

    def _entry(self, repo: str, ref: str, path: str) -> ObjectEntry:
        entry = self.store.get_entry(repo, self.store.resolve(repo, ref), path)
        if entry is None:
            raise NotFound("not found")
        return entry

    def _object_headers(self, entry: ObjectEntry) -> dict[str, str]:
        inline = entry.content_type.startswith(_INLINE_TYPES)
        filename = entry.path.rsplit("/", 1)[-1].replace('"', "")
        return {
            "ETag": f'"{entry.checksum}"',
            "Last-Modified": email.utils.formatdate(entry.mtime, usegmt=True),
            "Content-Type": entry.content_type,
            "Accept-Ranges": "bytes",
            "Cache-Control": "no-store, must-revalidate",
            "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{filename}"',
        }

    async def get_object(self, request: Request, repo: str, ref: str) -> Response:
        entry = self._entry(repo, ref, validate_path(_require_query(request, "path")))
        headers = self._object_headers(entry)
        start, end = 0, entry.size_bytes - 1
        status = 200
        if "range" in request.headers:
            start, end = _parse_range(request.headers["range"], entry.size_bytes)
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size_bytes}"
            status = 206
        length = max(end - start + 1, 0)
        headers["Content-Length"] = str(length)
        path = self.blobs.path_of(entry.address)
        return StreamingResponse(_read_file(path, start, length), status_code=status, headers=headers,
                                 media_type=entry.content_type)

    async def head_object(self, request: Request, repo: str, ref: str) -> Response:
        entry = self._entry(repo, ref, validate_path(_require_query(request, "path")))
        headers = self._object_headers(entry)
        headers["Content-Length"] = str(entry.size_bytes)
        return Response(status_code=200, headers=headers)

    async def stat_object(self, request: Request, repo: str, ref: str) -> Response:
        entry = self._entry(repo, ref, validate_path(_require_query(request, "path")))
        return _json(self._object_stats(self._namespace(repo), entry))

    async def list_objects(self, request: Request, repo: str, ref: str) -> Response:
        query = request.query_params
        with_metadata = _bool(request, "user_metadata", default=True)
        results, has_more = self.store.list_objects(
            repo, self.store.resolve(repo, ref), query.get("prefix", ""), query.get("after", ""),
            query.get("delimiter", ""), _amount(request),
        )
        items, namespace = [], self._namespace(repo)
        for item in results:
            if isinstance(item, str):
                items.append({"path": item, "path_type": "common_prefix", "physical_address": "",
                              "checksum": "", "mtime": 0})
            else:
                items.append(self._object_stats(namespace, item, with_metadata and bool(item.metadata)))
        return _listing(items, has_more, key="path")

    # -------------------------------------------------------------- action runs

    async def list_action_runs(self, request: Request, repo: str) -> Response:
        runs, has_more = self.store.list_action_runs(
            repo, request.query_params.get("after", ""), _amount(request),
            branch=request.query_params.get("branch", ""), commit=request.query_params.get("commit", ""),
        )
        return _listing([{k: v for k, v in run.items() if k != "hooks"} for run in runs], has_more, key="run_id")

    async def get_action_run(self, request: Request, repo: str, run_id: str) -> Response:
        run = self.store.get_action_run(repo, run_id)
        return _json({k: v for k, v in run.items() if k != "hooks"})

    async def list_run_hooks(self, request: Request, repo: str, run_id: str) -> Response:
        hooks = self.store.get_action_run(repo, run_id)["hooks"]
        return _json({"pagination": _pagination(False, len(hooks), ""), "results": hooks})


_TAG_FORBIDDEN = re.compile(r"\.\.|/|@\{|[\^:?*\[\\]")


def _valid_tag(tag: str) -> bool:
    """git check-ref-format-like rules, as lakeFS applies to tag ids."""
    return (
        bool(tag) and tag != "@" and not tag.endswith((".", ".lock")) and not _TAG_FORBIDDEN.search(tag)
        and all(ord(c) > 0x20 for c in tag)
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(404, "invalid API endpoint")


def create_app(data_dir: Path, credentials: Credentials) -> tuple[ASGIApp, LakeFSAPI]:
    api = LakeFSAPI(data_dir, credentials)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        yield
        await api.actions.aclose()
        api.store.close()

    starlette = Starlette(routes=api.routes() + ui_routes(api.store), exception_handlers={404: _not_found},
                          lifespan=lifespan)
    return BasicAuth(starlette, credentials), api
