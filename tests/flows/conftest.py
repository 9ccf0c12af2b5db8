"""Fixtures the training and pipeline flow tests share: LAKECTL_* for the
module and a repository whose main holds the demo data."""

from __future__ import annotations

import pytest

from flows.demo import ingest_demo_data
from sluice.core.config import DataConfig, LakeFSConfig, SluiceConfig
from tests.conftest import REPO_ROOT, unique_name


@pytest.fixture(scope="module")
def lake_environment(lakefs_server):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAKECTL_SERVER_ENDPOINT_URL", lakefs_server.url)
        env.setenv("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", lakefs_server.access_key_id)
        env.setenv("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", lakefs_server.secret_access_key)
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        # sample CPU/memory every second, so that even a short training logs system metrics
        env.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        yield


@pytest.fixture(scope="module")
def published(lake_environment, prefect_harness, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A data repository whose main holds the demo sft, eval and preference data."""
    name = unique_name("train")
    config = SluiceConfig(lakefs=LakeFSConfig(repository=name, storage_namespace=f"local://{name}"),
                          data=DataConfig(demo_source=REPO_ROOT / "demo" / "data",
                                          work_dir=tmp_path_factory.mktemp("ingest-work")))
    results = ingest_demo_data(config=config)
    assert [r.decision for r in results] == ["publish"] * 3
    return config.lakefs, results[-1].main_commit.commit_id
