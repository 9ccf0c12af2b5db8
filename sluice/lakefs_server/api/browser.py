"""What a browser may do with the server: the guard in front of the whole app.

A browser that has logged in to the web view sends its Basic credentials with
every request to this origin, whichever site started it. So:

- a state-changing request that a browser marks as coming from another site
  (an ``Origin`` that is not this server's, or ``Sec-Fetch-Site`` that is not
  same-origin) is refused with 403 before it reaches the API. Clients that are
  not browsers (the SDK, curl) send neither header and pass;
- every response says how it may be used: never sniffed into another type
  (``nosniff``), never framed, and under a Content-Security-Policy. API
  responses, object content among them, run nothing (``sandbox``); the web
  view's pages load nothing but their inline style.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .conventions import API, error_response

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
PAGE_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; "
               "form-action 'none'")
# Fetch metadata a browser attaches; "none" is a user typing the address.
_TRUSTED_FETCH_SITES = {"same-origin", "none"}


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    policy = API_POLICY if path.startswith(API) else PAGE_POLICY
    return [
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", policy.encode()),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]


def cross_origin_write(scope: Scope) -> str | None:
    """Why this request is a write from another site, or None."""
    if scope["method"] not in WRITE_METHODS:
        return None
    headers = {name: value.decode("latin-1") for name, value in scope["headers"]}
    fetch_site = headers.get(b"sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in _TRUSTED_FETCH_SITES:
        return f"header Sec-Fetch-Site: {fetch_site!r} requests may not change state"
    origin = headers.get(b"origin")
    if origin is not None and origin.lower() != f"{scope['scheme']}://{headers.get(b'host', '')}".lower():
        return f"header Origin: {origin!r} is not this server's origin"
    return None


class BrowserGuard:
    """ASGI middleware: refuse cross-origin writes, add the security headers."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        refusal = cross_origin_write(scope)
        if refusal is not None:
            await error_response(403, f"cross-origin request refused: {refusal}")(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
