"""The records of hook runs: ``/repositories/{repo}/actions/runs``. The hooks
themselves run in :mod:`..actions`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .conventions import json_response, listing, pagination, query_amount
from .state import ServerState


async def list_action_runs(state: ServerState, request: Request, repo: str) -> Response:
    runs, has_more = state.store.list_action_runs(
        repo, request.query_params.get("after", ""), query_amount(request),
        branch=request.query_params.get("branch", ""), commit=request.query_params.get("commit", ""),
    )
    return listing([{k: v for k, v in run.items() if k != "hooks"} for run in runs], has_more, key="run_id")


async def get_action_run(state: ServerState, request: Request, repo: str, run_id: str) -> Response:
    run = state.store.get_action_run(repo, run_id)
    return json_response({k: v for k, v in run.items() if k != "hooks"})


async def list_run_hooks(state: ServerState, request: Request, repo: str, run_id: str) -> Response:
    hooks = state.store.get_action_run(repo, run_id)["hooks"]
    return json_response({"pagination": pagination(False, len(hooks), ""), "results": hooks})
