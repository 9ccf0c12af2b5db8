"""Every YAML file in the repository is loaded by the loader its place
implies, and must load cleanly. A YAML file in a place no loader knows is a
failure too: teach this test how to check it."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest
import yaml

from sluice.core.config import load_config
from sluice.core.data.contracts import load_contract
from sluice.lakefs_server.actions import parse_action
from tests.conftest import REPO_ROOT


def _yaml_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.yaml", "*.yml"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    return sorted(REPO_ROOT / name for name in listed if (REPO_ROOT / name).exists())


def _check_prefect_yaml(path: Path) -> None:
    from prefect.flows import Flow

    document = yaml.safe_load(path.read_text())
    deployments = document.get("deployments") or []
    assert deployments, f"{path}: no deployments"
    for deployment in deployments:
        module_path, _, flow_name = deployment["entrypoint"].partition(":")
        assert (REPO_ROOT / module_path).is_file(), f"{path}: {deployment['name']}: {module_path} does not exist"
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, flow_name, None)
        assert isinstance(flow, Flow), f"{path}: {deployment['entrypoint']} is not a Prefect flow"
        flow.validate_parameters(deployment.get("parameters") or {})  # raises if a default does not validate


def _check_accelerate_config(path: Path) -> None:
    """Loads as accelerate's own config class would, with a known distributed type."""
    from accelerate.commands.config.config_args import ClusterConfig

    document = yaml.safe_load(path.read_text())
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type.value in {"NO", "MULTI_GPU", "DEEPSPEED"}, path
    if document["distributed_type"] == "DEEPSPEED":
        assert document["deepspeed_config"]["zero_stage"] in (2, 3), path


def _check_compose_file(path: Path) -> None:
    """Every service has an image or a build whose Dockerfile exists, every ${VAR} has an example value, and
    the bridge's secret reaches lakeFS under the LAKEFSACTION_ name the action file reads."""
    import re

    document = yaml.safe_load(path.read_text())
    services = document["services"]
    assert {"lakefs", "postgres", "minio", "mlflow", "prefect-server", "worker", "bridge", "serving"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        assert service.get("image") or build, f"{path}: service {name} has neither image nor build"
        if build:
            assert (path.parent / build["context"] / build["dockerfile"]).is_file(), f"{path}: {name}: no Dockerfile"
    example = dict(line.split("=", 1) for line in (path.parent / "example.env").read_text().splitlines()
                   if line and not line.startswith("#"))
    used = set(re.findall(r"(?<!\$)\$\{(\w+)\}", path.read_text()))
    assert used <= set(example), f"{path}: no example value for {sorted(used - set(example))}"
    assert services["lakefs"]["environment"]["LAKEFSACTION_SLUICE_BRIDGE_TOKEN"] == "${BRIDGE_TOKEN}"
    assert services["bridge"]["environment"]["SLUICE_BRIDGE_TOKEN"] == "${BRIDGE_TOKEN}"


def _check(path: Path) -> None:
    relative = path.relative_to(REPO_ROOT)
    if relative.parts[0] == "configs":
        load_config([path])
    elif relative == Path("prefect.yaml"):
        _check_prefect_yaml(path)
    elif relative.parts[0] == "data_contracts" or relative.parts[:2] == ("demo", "contracts"):
        contract = load_contract(path)
        assert relative.stem == contract.kind, f"{relative} describes {contract.kind} data: name it {contract.kind}.yaml"
    elif relative.parts[:2] in (("deployments", "accelerate"), ("deployments", "deepspeed")):
        _check_accelerate_config(path)
    elif relative.parts[:2] == ("deployments", "compose"):
        _check_compose_file(path)
    elif relative.parts[:2] == ("deployments", "lakefs-actions"):
        parse_action(str(relative), path.read_bytes())
    else:
        pytest.fail(f"{relative}: no loader knows this YAML file; add one to {Path(__file__).name}")


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_yaml_file_loads(path: Path) -> None:
    _check(path)


def test_the_repository_has_yaml_files_to_check() -> None:
    names = {str(p.relative_to(REPO_ROOT)) for p in _yaml_files()}
    assert {"prefect.yaml", "configs/env/local.yaml", "data_contracts/sft.yaml", "data_contracts/eval.yaml",
            "data_contracts/preference.yaml"} <= names
