"""Where the project's own files are: the checkout Sluicegate runs from
(its ``deployments/`` configs, the git commit that lineage records)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = PROJECT_ROOT / "deployments"
