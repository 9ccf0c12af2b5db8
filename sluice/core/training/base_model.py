"""The base model a training starts from: present, and identified by its
contents, so that the same base gives the same training key."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sluice.core.training.results import TrainingError

FULL_HASH_LIMIT = 64 << 20  # bigger weight files are fingerprinted by size, head and tail


def base_model_fingerprint(base_model: str) -> str:
    """What identifies the base model: a local folder by its files' contents
    (large weight files by size, head and tail), a hub id by its name."""
    path = Path(base_model)
    if not path.exists():
        return f"hub:{base_model}"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        size = file.stat().st_size
        digest.update(str(size).encode())
        with file.open("rb") as handle:
            if size <= FULL_HASH_LIMIT:
                digest.update(handle.read())
            else:
                digest.update(handle.read(1 << 20))
                handle.seek(-(1 << 20), 2)
                digest.update(handle.read())
    return f"sha256:{digest.hexdigest()}"


def check_base_model(base_model: str) -> str:
    """The base model's fingerprint; a clear error if it is not there."""
    path = Path(base_model)
    looks_local = base_model.startswith((".", "/")) or path.exists()
    if looks_local and not (path / "config.json").is_file():
        raise TrainingError(f"base model {base_model!r} not found: build the tiny offline one with "
                            f"`sluice model init-tiny {base_model}`, or set training.base_model to a Hugging Face id")
    return base_model_fingerprint(base_model)
