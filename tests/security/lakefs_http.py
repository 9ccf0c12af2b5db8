"""Raw HTTP to the embedded lakeFS server, as an attacker (or a browser) would
send it: httpx for ordinary requests, a bare socket where the test must see
when the answer arrives while the body is still being sent."""

from __future__ import annotations

import base64
import json
import select
import socket
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from sluice.shell.local_lakefs import LakeFSEndpoint


def api_client(server: LakeFSEndpoint) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", auth=(server.access_key_id, server.secret_access_key),
                        timeout=30)


def basic_token(server: LakeFSEndpoint) -> str:
    return base64.b64encode(f"{server.access_key_id}:{server.secret_access_key}".encode()).decode()


def new_repository(api: httpx.Client) -> str:
    name = f"sec-{uuid.uuid4().hex[:12]}"
    response = api.post("/repositories", json={"name": name, "storage_namespace": f"local://{name}"})
    assert response.status_code == 201, response.text
    return name


@dataclass
class EarlyAnswer:
    status: int
    body: dict
    sent_before_answer: int  # body bytes the client had sent when the answer was readable


def post_until_answered(server: LakeFSEndpoint, path: str, total: int, *, content_length: bool,
                        chunk: int = 1 << 16) -> EarlyAnswer:
    """POST ``total`` bytes of JSON-ish filler (chunked, or with a declared
    Content-Length), checking before every chunk whether the server has
    answered already; stop sending as soon as it has."""
    url = urlsplit(server.url)
    framing = f"Content-Length: {total}" if content_length else "Transfer-Encoding: chunked"
    head = (f"POST /api/v1{path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Basic {basic_token(server)}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n")
    piece = b" " * chunk
    framed = piece if content_length else f"{chunk:x}\r\n".encode() + piece + b"\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head.encode())
        sent = 0
        while sent < total and not select.select([sock], [], [], 0)[0]:
            sock.sendall(framed)
            sent += chunk
        if sent >= total and not content_length:
            sock.sendall(b"0\r\n\r\n")
        status, body = _read_response(sock)
    return EarlyAnswer(status, body, sent)


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    received = b""
    while b"\r\n\r\n" not in received:
        received += _recv(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += _recv(sock)
    return int(lines[0].split()[1]), json.loads(body[:length] or b"{}")


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(1 << 16)
    if not data:
        raise ConnectionError("the server closed the connection before its answer was complete")
    return data
