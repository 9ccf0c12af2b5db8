"""Helpers for tests that crash the embedded server: a real ``sluice lakefs
serve`` process on a temporary data directory, SIGKILLed by the test or by a
webhook listener while a hook is in flight, then restarted on the same data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lakefs
import pytest
import yaml

from sluice.shell.local_lakefs import EmbeddedLakeFS
from tests.conftest import TEST_KEY
from tests.lakefs.webhook_listener import ReceivedCall, WebhookListener


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedLakeFS]:
    """A real server process on its own data directory, to kill and restart."""
    instance = EmbeddedLakeFS(tmp_path / "lakefs", port=0, credentials=TEST_KEY)
    instance.start()
    yield instance
    instance.stop()


def client_for(server: EmbeddedLakeFS) -> lakefs.Client:
    assert server.endpoint is not None
    return lakefs.Client(host=server.endpoint.url, username=TEST_KEY[0], password=TEST_KEY[1])


def restart(server: EmbeddedLakeFS, *, crash: bool) -> None:
    server.kill() if crash else server.stop()
    server.start()


def kill_on_hook(server: EmbeddedLakeFS, event_type: str) -> WebhookListener:
    """A listener that SIGKILLs the server when the given hook calls it."""

    def kill(call: ReceivedCall) -> None:
        if call.body.get("event_type") == event_type:
            server.kill()

    return WebhookListener(on_call=kill)


def action_file(url: str, event: str) -> bytes:
    """An action that calls ``url`` on ``event``."""
    return yaml.safe_dump({"name": "crash", "on": {event: None},
                           "hooks": [{"id": "crash", "type": "webhook", "properties": {"url": url}}]}).encode()


def swallow_crash(call):  # type: ignore[no-untyped-def]
    """Run an SDK call that the test kills the server under."""
    import urllib3
    from lakefs.exceptions import LakeFSException

    try:
        call()
    except (urllib3.exceptions.HTTPError, LakeFSException, ConnectionError):
        pass  # expected: the server was killed under it
