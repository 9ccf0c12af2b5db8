"""The PII a model could have seen in training, as cleaning recorded it: the
keyed digests in the cleaning report of every batch's manifest at the data
commit (``<datasets>/<kind>/manifests/<batch>.json``). No original is read,
because none was kept."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from sluice.core.data.cleaning.pii_digests import PiiDigests
from sluice.core.lake.client import lakefs_call, lakefs_client


class KnownPii(BaseModel):
    """Every batch's digests at one data commit, and whether the set is complete."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    digests: list[PiiDigests] = []
    batches: int = 0  # manifests read
    undigested_batches: list[str] = []  # manifests whose cleaning redacted PII but kept no digests (older ingests)

    @property
    def complete(self) -> bool:
        """Every redacted original can be recognised (else a leak check could miss one: not measured)."""
        return not self.undigested_batches


def batch_pii_digests(manifest: dict, path: str) -> tuple[PiiDigests | None, bool]:
    """One manifest's digests, and whether PII was redacted without digests being kept."""
    cleaning = manifest.get("cleaning") or {}
    recorded = cleaning.get("pii_digests")
    if recorded is not None:
        return PiiDigests.model_validate(recorded), False
    return None, bool(cleaning.get("pii_redacted"))


def training_pii_digests(repository: str, commit_id: str, datasets_prefix: str) -> KnownPii:
    """The digests of every batch published at ``commit_id`` (all kinds: whatever a model trained on there)."""
    import lakefs

    ref = lakefs.Repository(repository, client=lakefs_client()).ref(commit_id)
    digests, undigested, batches = [], [], 0
    with lakefs_call(f"read the batch manifests under {repository}/{commit_id}/{datasets_prefix}/"):
        paths = [o.path for o in ref.objects(prefix=f"{datasets_prefix}/")
                 if "/manifests/" in o.path and o.path.endswith(".json")]
        for path in sorted(paths):
            found, missing = batch_pii_digests(json.loads(ref.object(path).reader(mode="rb").read()), path)
            batches += 1
            if found is not None:
                digests.append(found)
            elif missing:
                undigested.append(path)
    return KnownPii(digests=digests, batches=batches, undigested_batches=undigested)
