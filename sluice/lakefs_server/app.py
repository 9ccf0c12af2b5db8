"""The lakeFS REST API (``/api/v1``) and the web view as one ASGI app: the
route table, the translation of :mod:`.errors` into lakeFS's error answers,
and the access-key check in front of it all; in front of that,
:class:`~.api.browser.BrowserGuard` refuses writes from other sites and adds
the security headers to every answer.

The handlers live in :mod:`.api`, one module per resource; they work on a
:class:`~.api.state.ServerState` over :class:`~.metadata.store.MetadataStore`
and :class:`~.blobs.BlobStore`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .api import action_runs, commits, objects, repositories, server_info
from .api.auth import BasicAuth, Credentials
from .api.browser import BrowserGuard
from .api.conventions import API, error_response
from .api.state import ServerState
from .errors import APIError, MergeConflict, RangeNotSatisfiable
from .ui import ui_routes

Handler = Callable[..., Awaitable[Response]]


def _route_table() -> list[tuple[str, str, Handler]]:
    r = f"{API}/repositories/{{repo}}"
    return [
        ("GET", f"{API}/healthcheck", server_info.healthcheck),
        ("GET", f"{API}/setup_lakefs", server_info.setup_state),
        ("GET", f"{API}/config", server_info.config),
        ("GET", f"{API}/config/version", server_info.config_version),
        ("GET", f"{API}/config/storage", server_info.config_storage),
        ("GET", f"{API}/user", server_info.current_user),
        ("GET", f"{API}/repositories", repositories.list_repositories),
        ("POST", f"{API}/repositories", repositories.create_repository),
        ("GET", r, repositories.get_repository),
        ("DELETE", r, repositories.delete_repository),
        ("GET", f"{r}/metadata", repositories.repository_metadata),
        ("GET", f"{r}/branches", repositories.list_branches),
        ("POST", f"{r}/branches", repositories.create_branch),
        ("GET", f"{r}/branches/{{branch}}", repositories.get_branch),
        ("DELETE", f"{r}/branches/{{branch}}", repositories.delete_branch),
        ("PUT", f"{r}/branches/{{branch}}", repositories.reset_branch),
        ("GET", f"{r}/branches/{{branch}}/diff", commits.diff_uncommitted),
        ("POST", f"{r}/branches/{{branch}}/commits", commits.commit),
        ("POST", f"{r}/branches/{{branch}}/objects", objects.upload_object),
        ("DELETE", f"{r}/branches/{{branch}}/objects", objects.delete_object),
        ("POST", f"{r}/branches/{{branch}}/objects/delete", objects.delete_objects),
        ("GET", f"{r}/refs/{{ref}}/objects", objects.get_object),
        ("HEAD", f"{r}/refs/{{ref}}/objects", objects.head_object),
        ("GET", f"{r}/refs/{{ref}}/objects/stat", objects.stat_object),
        ("GET", f"{r}/refs/{{ref}}/objects/ls", objects.list_objects),
        ("GET", f"{r}/refs/{{ref}}/commits", commits.log_commits),
        ("GET", f"{r}/refs/{{left}}/diff/{{right}}", commits.diff_refs),
        ("POST", f"{r}/refs/{{source}}/merge/{{dest}}", commits.merge),
        ("GET", f"{r}/refs/{{source}}/merge/{{dest}}", commits.merge_base),
        ("GET", f"{r}/commits/{{commit}}", commits.get_commit),
        ("GET", f"{r}/tags", repositories.list_tags),
        ("POST", f"{r}/tags", repositories.create_tag),
        ("GET", f"{r}/tags/{{tag}}", repositories.get_tag),
        ("DELETE", f"{r}/tags/{{tag}}", repositories.delete_tag),
        ("GET", f"{r}/actions/runs", action_runs.list_action_runs),
        ("GET", f"{r}/actions/runs/{{run_id}}", action_runs.get_action_run),
        ("GET", f"{r}/actions/runs/{{run_id}}/hooks", action_runs.list_run_hooks),
    ]


def api_routes(state: ServerState) -> list[Route]:
    by_path: dict[str, dict[str, Handler]] = defaultdict(dict)
    for method, path, handler in _route_table():
        by_path[path][method] = partial(handler, state)
    return [Route(path, _dispatch(handlers), methods=list(handlers)) for path, handlers in by_path.items()]


def _dispatch(handlers: dict[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
    """One endpoint for all methods of a path; an :class:`APIError` becomes
    lakeFS's answer for it."""

    async def endpoint(request: Request) -> Response:
        handler = handlers[request.method]
        try:
            return await handler(request, **request.path_params)
        except MergeConflict as exc:
            return error_response(exc.status, exc.message, reference="")
        except RangeNotSatisfiable as exc:
            headers = {"Content-Range": f"bytes */{exc.size}"} if exc.size >= 0 else {}
            response = error_response(exc.status, exc.message)
            response.headers.update(headers)
            return response
        except APIError as exc:
            if request.method == "HEAD":
                return Response(status_code=exc.status)
            return error_response(exc.status, exc.message)

    return endpoint


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, "invalid API endpoint")


def create_app(data_dir: Path, credentials: Credentials) -> tuple[ASGIApp, ServerState]:
    state = ServerState(data_dir, credentials)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        yield
        await state.actions.aclose()
        state.store.close()

    starlette = Starlette(routes=api_routes(state) + ui_routes(state.store), exception_handlers={404: _not_found},
                          lifespan=lifespan)
    return BrowserGuard(BasicAuth(starlette, credentials)), state
