"""The server's one access key, checked by HTTP Basic auth on every request
but the health check and the setup state, as lakeFS does."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from .conventions import API, error_response


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    user: str = "admin"


class BasicAuth:
    """HTTP Basic against one access key; only health and setup are open."""

    OPEN = {f"{API}/healthcheck", f"{API}/setup_lakefs"}

    def __init__(self, app: ASGIApp, credentials: Credentials):
        self.app = app
        expected = f"{credentials.access_key_id}:{credentials.secret_access_key}".encode()
        self.expected_token = base64.b64encode(expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.OPEN:
            header = dict(scope["headers"]).get(b"authorization", b"")
            if not self._valid(header):
                response = error_response(401, "error authenticating request")
                if not scope["path"].startswith(API):  # a browser on the web view: ask for the key
                    response.headers["WWW-Authenticate"] = 'Basic realm="lakeFS"'
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _valid(self, header: bytes) -> bool:
        # RFC 7617 (via RFC 7235): the scheme is case-insensitive; `basic` and `BASIC` are Basic.
        scheme, _, token = header.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        return secrets.compare_digest(token.strip(), self.expected_token)
