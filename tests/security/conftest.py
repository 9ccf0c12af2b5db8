"""Fixtures for the raw-HTTP attack tests against the embedded lakeFS server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.security.lakefs_http import api_client, new_repository


@pytest.fixture
def api(lakefs_server) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """An authenticated httpx client on the server's /api/v1."""
    with api_client(lakefs_server) as client:
        yield client


@pytest.fixture
def repo_id(api: httpx.Client) -> str:
    """A fresh repository on the shared server."""
    return new_repository(api)
