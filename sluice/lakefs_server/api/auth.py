"""The server's one access key, checked by HTTP Basic auth on every request
but the health check and the setup state, as lakeFS does."""

from __future__ import annotations

import base64
import binascii
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
        self.expected = b"Basic " + base64.b64encode(expected)

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
        if not header.startswith(b"Basic "):
            return False
        try:
            base64.b64decode(header[6:], validate=True)
        except (binascii.Error, ValueError):
            return False
        return secrets.compare_digest(header, self.expected)
