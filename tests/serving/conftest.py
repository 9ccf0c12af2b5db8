"""Real parts for the serving tests: tiny models, an MLflow sqlite store with
registered versions, and servers on real sockets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sluice.core.config import RegistryConfig, ServingConfig, SluiceConfig, TrackingConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-serving-key"


def build_model(out_dir: Path, seed: int) -> Path:
    """The project's tiny model, with its projection weights scaled up: random weights at the
    usual 0.02 scale repeat one token whatever the prompt, scaled ones answer every prompt
    differently (so a batching bug that lets one row see another's padding shows)."""
    import torch
    from transformers import AutoModelForCausalLM

    from sluice.core.models.tiny_model import build_tiny_model

    build_tiny_model(out_dir, sorted((REPO_ROOT / "demo" / "data").glob("*.jsonl")), seed=seed)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "proj" in name:
                parameter.mul_(6.0)
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two different tiny models (seeds 1 and 2)."""
    root = tmp_path_factory.mktemp("serving-models")
    return {seed: build_model(root / f"seed-{seed}", seed) for seed in (1, 2)}


@dataclass
class Registry:
    """A real MLflow store (sqlite + local artifacts) with the tiny models logged as runs."""

    store_dir: Path
    tracking_uri: str
    sources: dict[int, tuple[str, str]]  # seed → (artifact source, run id)

    def client(self):  # type: ignore[no-untyped-def]
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    def register(self, name: str, seeds: list[int], champion: int | None = 1) -> None:
        """A registered model whose versions 1, 2, … hold the given seeds' models; @champion → version."""
        client = self.client()
        client.create_registered_model(name)
        for seed in seeds:
            source, run_id = self.sources[seed]
            client.create_model_version(name, source=source, run_id=run_id)
        if champion is not None:
            client.set_registered_model_alias(name, "champion", str(champion))

    def set_champion(self, name: str, version: int) -> None:
        self.client().set_registered_model_alias(name, "champion", str(version))

    def config(self, name: str, state_dir: Path, **serving: object) -> SluiceConfig:
        settings = {"port": 0, "state_dir": state_dir, "watch_seconds": 60.0, "batch_wait_ms": 5.0, **serving}
        return SluiceConfig(tracking=TrackingConfig(embedded_dir=self.store_dir),
                            registry=RegistryConfig(model_name=name), serving=ServingConfig(**settings))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[int, Path]) -> Registry:
    from sluice.core.registry.tracking import ensure_experiment, tracking_target

    store_dir = tmp_path_factory.mktemp("serving-mlflow")
    target = tracking_target(TrackingConfig(embedded_dir=store_dir))
    experiment_id = ensure_experiment(target, "serving-tests")
    from mlflow import MlflowClient

    client = MlflowClient(target.tracking_uri)
    sources = {}
    for seed, folder in tiny_models.items():
        run = client.create_run(experiment_id)
        client.log_artifacts(run.info.run_id, str(folder), "model")
        client.set_terminated(run.info.run_id)
        sources[seed] = (f"{run.info.artifact_uri}/model", run.info.run_id)
    return Registry(store_dir, target.tracking_uri, sources)


@pytest.fixture(scope="session")
def lora_adapters(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[int, Path]) -> dict[int, Path]:
    """Three LoRA adapters (seeds 11, 12, 13) over the seed-1 tiny model: folders with adapter/ and
    merged/ (see tests/serving/lora_fixtures.py)."""
    from tests.serving.lora_fixtures import build_adapter

    root = tmp_path_factory.mktemp("lora-adapters")
    return {seed: build_adapter(tiny_models[1], root / f"lora-{seed}", seed) for seed in (11, 12, 13)}
