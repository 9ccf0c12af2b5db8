"""The SDK client, and one clear error for everything lakeFS can say.

The endpoint and credentials come from the standard variables
(``LAKECTL_SERVER_ENDPOINT_URL``, ``LAKECTL_CREDENTIALS_ACCESS_KEY_ID``,
``LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY``). :class:`LakeFSUnavailable` (lakeFS
could not be reached) is the only error worth retrying: a 404 or a conflict
will not change by asking again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sluice.core.errors import USAGE, ExplainedError

if TYPE_CHECKING:
    import lakefs

COMMIT_ID = re.compile(r"^[0-9a-f]{64}$")


class LakeFSError(ExplainedError, RuntimeError):
    """lakeFS answered, and said no."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class LakeFSUnavailable(LakeFSError):
    """lakeFS could not be reached (worth retrying)."""


class LakeFSNotConfigured(LakeFSError):
    """The LAKECTL_* variables that say where lakeFS is, and who asks, are not set."""

    exit_code = USAGE


def endpoint_url() -> str:
    url = os.environ.get("LAKECTL_SERVER_ENDPOINT_URL")
    if not url:
        raise LakeFSNotConfigured(
            "LAKECTL_SERVER_ENDPOINT_URL is not set: point it at lakeFS (and set LAKECTL_CREDENTIALS_ACCESS_KEY_ID "
            "and LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY), or run through `sluice`, which starts the embedded server"
        )
    return url.rstrip("/").removesuffix("/api/v1")


def lakefs_client() -> lakefs.Client:
    """An SDK client configured from the standard LAKECTL_* variables."""
    import lakefs

    url = endpoint_url()
    key = os.environ.get("LAKECTL_CREDENTIALS_ACCESS_KEY_ID")
    secret = os.environ.get("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY")
    if not key or not secret:
        raise LakeFSNotConfigured(f"LAKECTL_SERVER_ENDPOINT_URL is {url}, but LAKECTL_CREDENTIALS_ACCESS_KEY_ID and "
                                  "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY are not both set: set them to the access "
                                  "key of that lakeFS")
    return lakefs.Client(host=url, username=key, password=secret)


def commit_url(repository: str, commit_id: str) -> str:
    """Where a person looks at a commit (the lakeFS web UI's commit page)."""
    return f"{endpoint_url()}/repositories/{repository}/commits/{commit_id}"


@contextmanager
def lakefs_call(action: str) -> Iterator[None]:
    """Turn SDK and transport errors into one clear message saying what was
    being done, against which server, and what lakeFS answered."""
    import urllib3
    from lakefs.exceptions import ServerException

    try:
        yield
    except ServerException as exc:
        message = exc.body.get("message") if isinstance(exc.body, dict) else None
        raise LakeFSError(
            f"lakeFS refused to {action}: {exc.status_code} {message or exc.reason or ''}".rstrip(),
            status=exc.status_code,
        ) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise LakeFSUnavailable(
            f"could not {action}: lakeFS at {os.environ.get('LAKECTL_SERVER_ENDPOINT_URL')} is not reachable "
            f"({type(exc).__name__}). Is it running? Check LAKECTL_SERVER_ENDPOINT_URL."
        ) from exc


def require_commit_id(ref: str) -> str:
    """Datasets are read at exact commit ids, never at a moving branch."""
    if not COMMIT_ID.match(ref):
        raise ValueError(
            f"{ref!r} is not a commit id: read datasets at an exact commit (resolve the branch or tag first with "
            "resolve_commit)"
        )
    return ref
