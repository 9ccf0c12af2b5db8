"""An MLflow dataset source for data in lakeFS, so a run's input records
``lakefs://<repository>/<commit id>/<path>`` exactly (MLflow rejects the
plain string). Registered through the ``mlflow.dataset_source`` entry point in
pyproject.toml, so every process that reads runs back knows it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from mlflow.data.dataset_source import DatasetSource


class LakeFSDatasetSource(DatasetSource):
    def __init__(self, uri: str):
        parsed = urlparse(uri)
        if parsed.scheme != "lakefs" or not parsed.netloc:
            raise ValueError(f"not a lakefs:// URI: {uri!r}")
        self.uri = uri
        ref_and_path = parsed.path.lstrip("/").split("/", 1)
        self.repository = parsed.netloc
        self.ref = ref_and_path[0]
        self.path = ref_and_path[1] if len(ref_and_path) > 1 else ""

    @staticmethod
    def _get_source_type() -> str:
        return "lakefs"

    def load(self, dst_path: str | None = None) -> str:
        """Lineage only: the data is read through the lakeFS SDK at this URI."""
        return self.uri

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return isinstance(raw_source, str) and raw_source.startswith("lakefs://")

    @classmethod
    def _resolve(cls, raw_source: Any) -> LakeFSDatasetSource:
        return cls(raw_source)

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> LakeFSDatasetSource:
        return cls(source_dict["uri"])
