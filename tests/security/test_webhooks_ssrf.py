"""lakeFS action webhooks as a probe of the server's network (issue 13, item
8): a hook does not follow redirects, its timeout has a ceiling checked when
the action file loads, and a failed pre-hook's 412 says "webhook <id> failed"
without the connection error (which told which internal ports answer); that
detail goes to the server log."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import lakefs
import pytest
import yaml
from lakefs.exceptions import ServerException

from sluice.shell.local_lakefs import EmbeddedLakeFS
from tests.conftest import TEST_KEY
from tests.lakefs.webhook_listener import WebhookListener


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[EmbeddedLakeFS]:  # type: ignore[no-untyped-def]
    # its own server: these tests read its log
    instance = EmbeddedLakeFS(tmp_path_factory.mktemp("lakefs-webhooks"), port=0, credentials=TEST_KEY)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def main(server) -> lakefs.Branch:  # type: ignore[no-untyped-def]
    assert server.endpoint is not None
    client = lakefs.Client(host=server.endpoint.url, username=TEST_KEY[0], password=TEST_KEY[1])
    name = f"hooks-{uuid.uuid4().hex[:10]}"
    return lakefs.Repository(name, client=client).create(storage_namespace=f"local://{name}").branch("main")


class Redirector:
    """An outside endpoint that answers every POST with a 307 to ``target``."""

    def __init__(self, target: str):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.send_response(307)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _action(url: str, timeout: object = "5s") -> bytes:
    return yaml.safe_dump({"name": "gate", "on": {"pre-commit": None},
                           "hooks": [{"id": "probe_hook", "type": "webhook",
                                      "properties": {"url": url, "timeout": timeout}}]}).encode()


def _commit_with_action(main: lakefs.Branch, action: bytes) -> ServerException:
    main.object("_lakefs_actions/gate.yaml").upload(data=action)
    with pytest.raises(ServerException) as err:
        main.commit("through the gate")
    return err.value


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_webhooks_do_not_follow_redirects(main):
    internal = WebhookListener()  # e.g. an admin endpoint only the server can reach
    redirector = Redirector(f"{internal.url}/internal-admin")
    try:
        error = _commit_with_action(main, _action(redirector.url))
    finally:
        redirector.close()
        internal.close()
    assert error.status_code == 412
    assert internal.calls == []


@pytest.mark.parametrize("timeout", ["1000h", "5m1s", 301, 0, -1, "0s"])
def test_a_hook_timeout_outside_the_ceiling_is_refused_naming_file_and_field(main, timeout):
    error = _commit_with_action(main, _action("http://127.0.0.1:9/hook", timeout))
    assert error.status_code == 500  # lakeFS's answer for an action file it cannot load
    message = error.body["message"]
    assert "_lakefs_actions/gate.yaml" in message and "hooks[0].properties.timeout" in message


def test_a_hook_timeout_at_the_ceiling_loads(main):
    listener = WebhookListener()
    try:
        main.object("_lakefs_actions/gate.yaml").upload(data=_action(f"{listener.url}/hook", "5m"))
        assert main.commit("allowed").get_commit().message == "allowed"
    finally:
        listener.close()


def test_a_failed_hook_says_only_that_it_failed_and_logs_why(server, main):
    port = _closed_port()
    error = _commit_with_action(main, _action(f"http://127.0.0.1:{port}/hook"))
    assert error.status_code == 412
    message = error.body["message"]
    assert "webhook probe_hook failed" in message
    assert str(port) not in message and "Connect" not in message and "refused" not in message.lower()
    log = server.log_path.read_text(errors="replace")
    assert "probe_hook" in log and "ConnectError" in log


def test_a_hook_answering_an_error_status_does_not_reveal_it(main):
    listener = WebhookListener(status=404)
    try:
        error = _commit_with_action(main, _action(f"{listener.url}/hook"))
    finally:
        listener.close()
    assert error.status_code == 412
    assert "404" not in error.body["message"] and "webhook probe_hook failed" in error.body["message"]
