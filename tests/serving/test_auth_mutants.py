"""Serving auth, edge by edge: which Authorization headers a server with keys lets through (a
real server on loopback, with an empty registry so no model is needed), and the rules on hosts
and keys. Found unchecked by mutation testing (tools/mutation.py, scope "serving-auth")."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from sluice.core.config import RegistryConfig, ServingConfig, SluiceConfig, TrackingConfig
from sluice.serving import ServingHandle
from sluice.serving.server import API_KEYS_VARIABLE, ServingError, api_keys_for, api_keys_from_environment, bind, url_of

KEYS = ["first-key-0123", "second-key-4567"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("auth")
    config = SluiceConfig(tracking=TrackingConfig(embedded_dir=root / "mlflow"),
                          registry=RegistryConfig(model_name="never-registered"),
                          serving=ServingConfig(port=0, state_dir=root / "state", watch_seconds=60.0))
    with ServingHandle(config, api_keys=KEYS) as handle:
        yield handle


def _status(server: ServingHandle, authorization: str | None) -> int:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.get(f"{server.url}/v1/models", headers=headers, timeout=30).status_code


@pytest.mark.parametrize("authorization", [
    f"Bearer {KEYS[0]}", f"Bearer {KEYS[1]}",  # every key, not only the first
    f"bearer {KEYS[0]}", f"BEARER {KEYS[1]}",  # the scheme is case-insensitive (RFC 7235)
    f"Bearer   {KEYS[0]}",  # RFC 7235: one or more spaces after the scheme
])
def test_a_listed_key_is_let_through(server: ServingHandle, authorization: str) -> None:
    assert _status(server, authorization) != 401


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", f"Basic {KEYS[0]}", f"Token {KEYS[0]}", KEYS[0],
    f"Bearer {KEYS[0][:-1]}", f"Bearer {KEYS[0]}x", f"Bearer {KEYS[0]},{KEYS[1]}", f"Bearer {KEYS[0].upper()}",
    f"Bearer{KEYS[0]}",
])
def test_anything_else_gets_401_with_a_bearer_challenge(server: ServingHandle, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.get(f"{server.url}/v1/models", headers=headers, timeout=30)
    assert response.status_code == 401, authorization
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"error": {"message": "missing or invalid API key: send 'Authorization: Bearer <key>'",
                                         "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


def test_without_keys_on_loopback_everything_is_let_through(tmp_path: Path) -> None:
    config = SluiceConfig(tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"),
                          registry=RegistryConfig(model_name="never-registered"),
                          serving=ServingConfig(port=0, state_dir=tmp_path / "state", watch_seconds=60.0))
    with ServingHandle(config, api_keys=[]) as handle:
        assert _status(handle, None) != 401


# --- which keys, and where keys are needed -------------------------------------------


def test_keys_from_the_environment_are_split_on_commas_and_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEYS_VARIABLE, " a-key , ,b-key,")
    assert api_keys_from_environment() == ["a-key", "b-key"]
    assert api_keys_for("0.0.0.0", None) == ["a-key", "b-key"]  # None: the environment's
    monkeypatch.delenv(API_KEYS_VARIABLE)
    assert api_keys_from_environment() == []


def test_explicit_keys_win_and_empty_ones_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEYS_VARIABLE, "from-environment")
    assert api_keys_for("127.0.0.1", ["", "given"]) == ["given"]
    assert api_keys_for("127.0.0.1", []) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_may_serve_without_keys(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.delenv(API_KEYS_VARIABLE, raising=False)
    assert api_keys_for(host, None) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com", "localhost.example.com", ""])
def test_anything_else_refuses_to_serve_without_keys(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.delenv(API_KEYS_VARIABLE, raising=False)
    with pytest.raises(ServingError) as raised:
        api_keys_for(host, None)
    assert str(raised.value) == (f"refusing to serve on {host} without API keys: set {API_KEYS_VARIABLE}=key1,key2 "
                                 "(clients send 'Authorization: Bearer <key>'), or bind 127.0.0.1")
    with pytest.raises(ServingError):
        api_keys_for(host, [""])  # an empty key is no key


# --- the socket and the URL ------------------------------------------------------------


@pytest.mark.parametrize(("host", "family"), [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6),
                                              ("[::1]", socket.AF_INET6)])
def test_bind_listens_on_a_free_port_with_nagle_off(host: str, family: socket.AddressFamily) -> None:
    sock = bind(host, 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0 and sock.family == family
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        # asyncio turns Nagle off on accepted connections only when the listener says it is TCP
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.get_inheritable()
        socket.create_connection((host.strip("[]"), port), timeout=5).close()  # it listens
    finally:
        sock.close()


def test_bind_to_a_taken_port_says_what_to_do() -> None:
    taken = bind("127.0.0.1", 0)  # a listener: SO_REUSEADDR does not let a second one bind
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ServingError) as raised:
            bind("127.0.0.1", port)
    finally:
        taken.close()
    assert str(raised.value) == (f"cannot listen on 127.0.0.1:{port}: Address already in use; choose another port "
                                 "(--port, or serving.port=...; 0 picks a free one)")


@pytest.mark.parametrize(("host", "port", "url"), [
    ("127.0.0.1", 8000, "http://127.0.0.1:8000"), ("0.0.0.0", 8000, "http://127.0.0.1:8000"),
    ("", 81, "http://127.0.0.1:81"), ("::1", 8000, "http://[::1]:8000"), ("example.com", 1, "http://example.com:1"),
])
def test_url_of(host: str, port: int, url: str) -> None:
    assert url_of(host, port) == url
