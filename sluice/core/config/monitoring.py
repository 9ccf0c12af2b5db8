"""The ``monitoring`` section: how the ``monitor`` flow compares live traffic with the served model's
training data, and what a crossed threshold sets off.

Its own module (not in :mod:`.sections`): the monitoring settings grow with the monitor, and
``sections`` only names the section in :class:`~sluice.core.config.SluiceConfig`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    """Unknown keys are errors (as in every config section)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class MonitoringThresholds(_Strict):
    """When a window counts as drifted: each crossed threshold is one reason. Statistical tests need both a
    small p-value and a large enough effect, so a large window does not flag a harmless shift."""

    min_requests: int = Field(20, ge=2, description="Fewer answered requests of the served version in the window: "
                              "no decision (too little traffic to tell).")
    length_ks: float = Field(0.25, gt=0, le=1, description="Prompt length drift: two-sample Kolmogorov-Smirnov "
                             "statistic (largest gap between the two length CDFs, words) at least this ...")
    length_pvalue: float = Field(0.01, gt=0, lt=1, description="... with its p-value below this.")
    embedding_distance: float = Field(0.05, gt=0, le=2, description="Embedding drift: cosine distance between the "
                                      "mean MiniLM embeddings of window and training prompts at least this ...")
    embedding_pvalue: float = Field(0.01, gt=0, lt=1, description="... with its permutation-test p-value below "
                                    "this.")
    ood_share_increase: float = Field(0.2, gt=0, le=1, description="Out-of-domain prompts: share of window prompts "
                                      "whose nearest training prompt is less similar than monitoring.ood_similarity, "
                                      "minus the same share among training prompts themselves, above this.")
    empty_share: float = Field(0.1, ge=0, le=1, description="Share of empty answers above this.")
    refusal_share: float = Field(0.2, ge=0, le=1, description="Share of answers matching a refusal pattern above "
                                 "this.")
    min_mean_rating: float | None = Field(3.0, ge=1, le=5, description="Mean feedback rating (1-5) of the window's "
                                          "answers below this (None: ratings are reported, never a reason) ...")
    min_ratings: int = Field(5, ge=1, description="... judged only with at least this many rated answers.")


class MonitoringConfig(_Strict):
    """The scheduled ``monitor`` flow: the serving request log of one window against the training data of the
    served version (found at its lakeFS commit through the version's lineage tags)."""

    window_minutes: float = Field(60.0, gt=0, description="Length of a window. Windows are aligned to the epoch "
                                  "(hourly windows start on the hour), so each is judged once and a rerun of the "
                                  "same window finds its earlier result.")
    sample_size: int = Field(256, ge=10, description="Most prompts embedded per side (window, training data): "
                             "keeps the MiniLM cost flat on CPU however busy the window was.")
    ood_similarity: float = Field(0.5, gt=-1, lt=1, description="A prompt whose nearest training prompt has a "
                                  "cosine similarity (MiniLM) below this is out of domain.")
    permutations: int = Field(500, ge=50, description="Label permutations for the embedding drift p-value.")
    seed: int = Field(0, description="Seed for sampling and permutations (same window, same figures).")
    refusal_patterns: list[str] = Field(default_factory=list, description="More regexes (case-insensitive) that "
                                        "mark an answer as a refusal, beside the heuristic the canary and the "
                                        "probes use (sluice.core.evaluation.metrics.refusal).")
    thresholds: MonitoringThresholds = Field(default_factory=MonitoringThresholds)  # type: ignore[arg-type]
    on_drift: Literal["run-pipeline", "notify"] = Field(
        "run-pipeline", description="What the sluice.monitor.drift event sets off (prefect.yaml's triggers match "
        "it): run-pipeline retrains on main (deployment pipeline-on-drift); notify only reports (deployment "
        "notify-drift).")

    @model_validator(mode="after")
    def _patterns_compile(self) -> MonitoringConfig:
        import re

        bad = []
        for pattern in self.refusal_patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                bad.append(f"{pattern!r}: {error}")
        if bad:
            raise ValueError(f"refusal_patterns: not a regular expression: {'; '.join(bad)}")
        return self
