"""Endpoints and secrets: read only from each system's standard environment
variables, never from config files (the loader rejects such keys in YAML)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Environment(BaseModel):
    """Endpoints and secrets, read only from the environment. ``None`` means
    "use the embedded default"."""

    model_config = ConfigDict(frozen=True)

    lakefs_endpoint: str | None = Field(None, description="LAKECTL_SERVER_ENDPOINT_URL")
    lakefs_access_key_id: str | None = Field(None, description="LAKECTL_CREDENTIALS_ACCESS_KEY_ID")
    lakefs_secret_access_key: SecretStr | None = Field(None, description="LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY")
    mlflow_tracking_uri: str | None = Field(None, description="MLFLOW_TRACKING_URI")
    prefect_api_url: str | None = Field(None, description="PREFECT_API_URL")

    @classmethod
    def from_os(cls, environ: Mapping[str, str] | None = None) -> Environment:
        env = os.environ if environ is None else environ
        secret = env.get("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY")
        return cls(
            lakefs_endpoint=env.get("LAKECTL_SERVER_ENDPOINT_URL") or None,
            lakefs_access_key_id=env.get("LAKECTL_CREDENTIALS_ACCESS_KEY_ID") or None,
            lakefs_secret_access_key=SecretStr(secret) if secret else None,
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
            prefect_api_url=env.get("PREFECT_API_URL") or None,
        )
