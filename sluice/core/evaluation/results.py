"""What an evaluation produces: one type for a model's evaluation, one for a
comparison of two models, and the report that holds both."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from sluice.core.lake.published import PublishedData


class _Record(BaseModel):
    # Frozen: results are records, not working state. NaN ("not measured")
    # survives a JSON round trip instead of turning into null.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class Comparison(_Record):
    """Candidate minus a reference model on the same eval samples: the mean
    difference with a paired-bootstrap confidence interval [low, high]. NaN
    means not measured."""

    metric: str
    mean_difference: float
    low: float
    high: float
    samples: int  # pairs where both models were measured
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        """The interval lies wholly above or below 0 (False when nothing was measured)."""
        return self.low > 0 or self.high < 0


class EvaluatedModel(_Record):
    """One model's evaluation on the eval set of one data commit (small: ids, numbers)."""

    label: str  # how reports and the gate name it: "candidate", "version 3", "base model"
    model_identity: str  # what was evaluated: a training run, a model version, a base model fingerprint
    version: str | None = None  # registered model version, when there is one
    data_commit: str
    run_id: str  # the MLflow run holding this evaluation
    tracking_uri: str
    metrics: dict[str, float]  # aggregate metrics; NaN = not measured
    samples: int
    generation_tokens_per_second: float
    latency_ms_per_sample_p50: float
    judge_failures: int = 0
    probe_set: str | None = None  # "<version>@<digest>" of the probe set run next to the eval set (None: off)


class EvaluationReport(BaseModel):
    """The candidate and what it is compared with, on the same eval data."""

    eval_data: PublishedData
    candidate: EvaluatedModel
    champion: EvaluatedModel | None  # None: no champion yet
    base_model: EvaluatedModel | None  # evaluated only when there is no champion
    comparisons: dict[str, Comparison]  # candidate minus the champion (or the base model), per metric

    @property
    def reference(self) -> EvaluatedModel | None:
        return self.champion or self.base_model
