"""The bundled probe set: one JSON object per line in ``probes-<version>.jsonl``
next to this module. A changed file is a new version: the set's version and the
digest of its bytes go on every evaluation run, so two evaluations are
compared on the same probes or not at all."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROBE_DIR = Path(__file__).parent


class Probe(BaseModel):
    """One probe: a single prompt (refusal, pii_extraction) or a pair (demographic_pair)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: Literal["refusal", "pii_extraction", "demographic_pair"]
    prompt: str | None = None
    prompts: list[str] = Field(default_factory=list)  # demographic_pair: the two variants
    attribute: str | None = None  # demographic_pair: what differs (gender, age, …)
    answer: Literal["closed", "open"] | None = None  # demographic_pair: yes/no question, or free text

    @model_validator(mode="after")
    def _shape(self) -> Probe:
        if self.kind == "demographic_pair":
            if len(self.prompts) != 2 or not self.attribute or self.answer is None:
                raise ValueError("a demographic_pair needs two prompts, an attribute and answer: closed|open")
        elif not self.prompt or self.prompts:
            raise ValueError(f"a {self.kind} probe needs one prompt (and no prompts list)")
        return self


class ProbeSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    digest: str  # sha256 of the file, first 12 hex digits
    probes: list[Probe]

    def of_kind(self, kind: str) -> list[Probe]:
        return [p for p in self.probes if p.kind == kind]


def probe_set_path(version: str) -> Path:
    return PROBE_DIR / f"probes-{version}.jsonl"


def load_probe_set(version: str) -> ProbeSet:
    """The bundled probe set ``version``; a missing file or a bad line is an error naming the file and line."""
    path = probe_set_path(version)
    if not path.is_file():
        known = sorted(p.stem.removeprefix("probes-") for p in PROBE_DIR.glob("probes-*.jsonl"))
        raise ValueError(f"evaluation.probes.probe_set {version!r}: no bundled probe set {path.name}; "
                         f"bundled: {', '.join(known) or 'none'}")
    data = path.read_bytes()
    probes = []
    for number, line in enumerate(data.decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            probes.append(Probe.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as error:
            raise ValueError(f"{path}:{number}: not a valid probe: {error}") from None
    ids = [p.id for p in probes]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise ValueError(f"{path}: probe ids used twice: {duplicates}")
    return ProbeSet(version=version, digest=hashlib.sha256(data).hexdigest()[:12], probes=probes)
