"""What the server says about itself: the health check, the setup state, its
configuration and version, and the current user."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .conventions import json_response
from .state import ServerState

VERSION = "1.88.0"  # the lakeFS API version this server follows


async def healthcheck(state: ServerState, request: Request) -> Response:
    return Response(status_code=204)


async def setup_state(state: ServerState, request: Request) -> Response:
    return json_response({"state": "initialized", "comm_prefs_missing": False,
                          "login_config": {"RBAC": "none", "login_cookie_names": ["internal_auth_session"],
                                           "login_failed_message": "The credentials don't match.",
                                           "logout_url": "/logout"}})


def _storage_config() -> dict[str, Any]:
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


async def config(state: ServerState, request: Request) -> Response:
    return json_response({"version_config": {"version": VERSION, "version_context": "lakeFS",
                                             "upgrade_recommended": False},
                          "storage_config": _storage_config(), "storage_config_list": [],
                          "ui_config": {}, "capabilities_config": {}})


async def config_version(state: ServerState, request: Request) -> Response:
    return json_response({"version": VERSION, "upgrade_recommended": False})


async def config_storage(state: ServerState, request: Request) -> Response:
    return json_response(_storage_config())


async def current_user(state: ServerState, request: Request) -> Response:
    return json_response({"user": {"id": state.credentials.user, "creation_date": 0,
                                   "friendly_name": state.credentials.user}})
