"""Repositories, branches and tags: ``/repositories``,
``/repositories/{repo}/branches`` and ``/repositories/{repo}/tags``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..actions import HookEvent
from ..errors import BadRequest
from ..metadata.records import ResolvedRef
from ..names import BRANCH_NAME, REPOSITORY_NAME, STORAGE_NAMESPACE, is_valid_tag
from .conventions import body_json, json_response, listing, query_amount, query_bool
from .state import ServerState

# -------------------------------------------------------------- repositories


def _repository_json(state: ServerState, repo: str) -> dict[str, Any]:
    r = state.store.get_repository(repo)
    return {"id": r.name, "creation_date": r.creation_date, "default_branch": r.default_branch,
            "storage_id": "", "storage_namespace": r.storage_namespace, "read_only": r.read_only}


async def list_repositories(state: ServerState, request: Request) -> Response:
    repos, has_more = state.store.list_repositories(
        request.query_params.get("prefix", ""), request.query_params.get("after", ""), query_amount(request)
    )
    return listing([_repository_json(state, r.name) for r in repos], has_more)


async def create_repository(state: ServerState, request: Request) -> Response:
    body = await body_json(request, "RepositoryCreation")
    name, namespace = body.get("name"), body.get("storage_namespace")
    default_branch = body.get("default_branch") or "main"
    if not isinstance(name, str) or not REPOSITORY_NAME.match(name):
        raise BadRequest(
            "request body has an error: doesn't match schema #/components/schemas/RepositoryCreation: "
            f'Error at "/name": string doesn\'t match the regular expression "{REPOSITORY_NAME.pattern}"'
        )
    if not isinstance(namespace, str) or not STORAGE_NAMESPACE.match(namespace):
        raise BadRequest(
            "request body has an error: doesn't match schema #/components/schemas/RepositoryCreation: "
            'Error at "/storage_namespace": string doesn\'t match the regular expression '
            f'"{STORAGE_NAMESPACE.pattern}"'
        )
    if not namespace.startswith("local://"):
        raise BadRequest("failed to match required regex ^local://: invalid namespace")
    if not BRANCH_NAME.match(default_branch):
        raise BadRequest("argument default_branch: branch id: invalid value: validation error")
    state.store.create_repository(name, namespace, default_branch)
    return json_response(_repository_json(state, name), 201)


async def get_repository(state: ServerState, request: Request, repo: str) -> Response:
    return json_response(_repository_json(state, repo))


async def delete_repository(state: ServerState, request: Request, repo: str) -> Response:
    state.store.delete_repository(repo)
    return Response(status_code=204)


async def repository_metadata(state: ServerState, request: Request, repo: str) -> Response:
    state.store.get_repository(repo)
    return json_response({})


# -------------------------------------------------------------- branches


async def list_branches(state: ServerState, request: Request, repo: str) -> Response:
    rows, has_more = state.store.list_branches(
        repo, request.query_params.get("prefix", ""), request.query_params.get("after", ""), query_amount(request),
        show_hidden=query_bool(request, "show_hidden"),
    )
    return listing([{"id": name, "commit_id": commit_id} for name, commit_id in rows], has_more)


async def create_branch(state: ServerState, request: Request, repo: str) -> Response:
    body = await body_json(request, "BranchCreation")
    name, source = body.get("name"), body.get("source")
    if not isinstance(name, str) or not isinstance(source, str):
        raise BadRequest("request body has an error: doesn't match schema #/components/schemas/BranchCreation: "
                         "properties name and source are required")
    if not BRANCH_NAME.match(name):
        raise BadRequest(
            "argument branch: branch id: invalid value: validation error: branch id must consist of letters, "
            "digits, underscores and dashes, and cannot start with a dash"
        )
    source_ref = state.store.resolve_source(repo, source)
    event = HookEvent("pre-create-branch", repo, branch_id=name, source_ref=source,
                      commit_id=source_ref.commit_id)
    await state.actions.run_pre(event, source_ref)
    commit_id = state.store.create_branch(repo, name, source, hidden=bool(body.get("hidden")))
    event.event_type = "post-create-branch"
    state.actions.run_post(event, source_ref)
    return PlainTextResponse(commit_id, status_code=201)


async def get_branch(state: ServerState, request: Request, repo: str, branch: str) -> Response:
    return json_response({"id": branch, "commit_id": state.store.branch_head(repo, branch)})


async def delete_branch(state: ServerState, request: Request, repo: str, branch: str) -> Response:
    head = state.store.branch_head(repo, branch)
    event = HookEvent("pre-delete-branch", repo, branch_id=branch, source_ref=head, commit_id=head)
    if branch != state.store.get_repository(repo).default_branch:
        await state.actions.run_pre(event, ResolvedRef(head))
    state.store.delete_branch(repo, branch)
    state.branch_locks.pop((repo, branch), None)
    event.event_type = "post-delete-branch"
    state.actions.run_post(event, ResolvedRef(head))
    return Response(status_code=204)


async def reset_branch(state: ServerState, request: Request, repo: str, branch: str) -> Response:
    body = await body_json(request, "ResetCreation")
    state.store.reset_branch(repo, branch, str(body.get("type", "")), body.get("path"))
    return Response(status_code=204)


# -------------------------------------------------------------- tags


async def list_tags(state: ServerState, request: Request, repo: str) -> Response:
    rows, has_more = state.store.list_tags(
        repo, request.query_params.get("prefix", ""), request.query_params.get("after", ""), query_amount(request)
    )
    return listing([{"id": tag, "commit_id": commit_id} for tag, commit_id in rows], has_more)


async def create_tag(state: ServerState, request: Request, repo: str) -> Response:
    body = await body_json(request, "TagCreation")
    tag, ref = body.get("id"), body.get("ref")
    if not isinstance(tag, str) or not isinstance(ref, str):
        raise BadRequest("request body has an error: doesn't match schema #/components/schemas/TagCreation: "
                         "properties id and ref are required")
    if not is_valid_tag(tag):
        raise BadRequest("argument tagID: tag id: invalid value: validation error")
    commit_id = state.store.resolve(repo, ref).commit_id
    event = HookEvent("pre-create-tag", repo, source_ref=commit_id, commit_id=commit_id, tag_id=tag)
    await state.actions.run_pre(event, ResolvedRef(commit_id))
    commit_id = state.store.create_tag(repo, tag, ref)
    event.event_type = "post-create-tag"
    state.actions.run_post(event, ResolvedRef(commit_id))
    return json_response({"id": tag, "commit_id": commit_id}, 201)


async def get_tag(state: ServerState, request: Request, repo: str, tag: str) -> Response:
    return json_response({"id": tag, "commit_id": state.store.get_tag(repo, tag)})


async def delete_tag(state: ServerState, request: Request, repo: str, tag: str) -> Response:
    commit_id = state.store.get_tag(repo, tag)
    event = HookEvent("pre-delete-tag", repo, source_ref=commit_id, commit_id=commit_id, tag_id=tag)
    await state.actions.run_pre(event, ResolvedRef(commit_id))
    state.store.delete_tag(repo, tag)
    event.event_type = "post-delete-tag"
    state.actions.run_post(event, ResolvedRef(commit_id))
    return Response(status_code=204)
