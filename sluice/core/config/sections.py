"""The config sections: one pydantic model per stage, nested in
:class:`SluiceConfig`. Their field descriptions are the documentation of every
setting (``sluice config show`` prints the values, the Prefect UI renders the
descriptions as a form), and their validators check each value where it is set,
so a problem is reported with the file and line that set it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sluice.core.config.monitoring import MonitoringConfig

# lakeFS's own rules (pkg/graveler/validate.go); checked here so a bad name is
# reported with the config line that set it, not as a 400 from the server.
REPOSITORY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
BRANCH_NAME = re.compile(r"^\w[-\w]*$")


class _Section(BaseModel):
    """A config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class LakeFSConfig(_Section):
    """Where data is versioned. The server address and credentials come from
    ``LAKECTL_SERVER_ENDPOINT_URL`` / ``LAKECTL_CREDENTIALS_*``."""

    repository: str = Field(
        "sluice-data",
        description="lakeFS repository that holds every dataset (3-63 chars: a-z, 0-9, '-').",
    )
    default_branch: str = Field(
        "main",
        description="Protected branch: data reaches it only by a merge after its contract passed.",
    )
    storage_namespace: str = Field(
        "local://sluice-data",
        description=(
            "Storage namespace for a newly created repository; must fit the server's blockstore "
            "(local://… for the embedded server, s3://bucket/prefix for lakeFS on S3)."
        ),
    )
    embedded_data_dir: Path = Field(
        Path(".sluice/lakefs"),
        description=(
            "Data directory of the embedded lakeFS-compatible server, used when "
            "LAKECTL_SERVER_ENDPOINT_URL is not set."
        ),
    )

    embedded_port: int = Field(
        8000,
        ge=0,
        le=65535,
        description=(
            "Loopback port of the embedded server (lakeFS's default, so links in run reports stay valid); "
            "0 picks a free port."
        ),
    )

    @field_validator("repository")
    @classmethod
    def _repository_name(cls, value: str) -> str:
        if not REPOSITORY_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid lakeFS repository name (3-63 characters: a-z, 0-9 and '-', "
                "starting with a letter or digit)"
            )
        return value

    @field_validator("default_branch")
    @classmethod
    def _branch_name(cls, value: str) -> str:
        if not BRANCH_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid lakeFS branch name (letters, digits, '_' and '-')")
        return value

    @field_validator("storage_namespace")
    @classmethod
    def _namespace_scheme(cls, value: str) -> str:
        if not re.match(r"^(local|s3|gs|azure|https?|mem)://.+", value):
            raise ValueError(
                f"{value!r} is not a storage namespace: expected <scheme>://<location> with scheme "
                "local, s3, gs, azure or mem"
            )
        return value


class CleaningConfig(_Section):
    """How ingested text is cleaned before its contract is checked."""

    unicode_form: Literal["NFC", "NFKC"] | None = Field(
        "NFC", description="Unicode normalisation form for all text (None keeps text as received)."
    )
    collapse_whitespace: bool = Field(
        True,
        description="Trim, collapse runs of spaces/tabs, unify line ends and drop zero-width/control characters "
        "(newlines inside text are kept).",
    )
    drop_exact_duplicates: bool = Field(
        True, description="Drop rows whose cleaned content equals an earlier row's or one already in main."
    )
    near_duplicate_threshold: float | None = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="Drop rows whose MinHash-estimated Jaccard similarity (word shingles) to an earlier kept row "
        "is at least this; None disables near-duplicate removal.",
    )
    minhash_permutations: int = Field(64, ge=16, le=512, description="MinHash signature length.")
    shingle_words: int = Field(3, ge=1, le=10, description="Words per shingle for near-duplicate detection.")
    redact_pii: bool = Field(
        True, description="Replace emails, phone numbers, card numbers, IP addresses and pii_patterns with tags."
    )
    pii_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Extra PII patterns to redact, name → RE2 regex; each match becomes [NAME].",
    )
    tokenizer: str = Field(
        "whitespace",
        description="Token counting for length filters and contracts: 'whitespace', or a Hugging Face tokenizer "
        "id or local path.",
    )
    min_tokens: int = Field(1, ge=0, description="Drop rows with fewer tokens than this (all text fields together).")
    max_tokens: int = Field(4096, ge=1, description="Drop rows with more tokens than this.")

    @model_validator(mode="after")
    def _token_bounds(self) -> CleaningConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) is greater than max_tokens ({self.max_tokens})")
        return self


class DataConfig(_Section):
    """Where datasets live inside the data repository, and how they get there."""

    datasets_prefix: str = Field(
        "datasets",
        description="Folder in the data repository under which each dataset kind has its own folder.",
    )
    demo_source: Path = Field(
        Path("demo/data"),
        description="Bundled demo data (generated by `sluice demo-data`), committed by `make demo`.",
    )
    chunk_rows: int = Field(
        100_000, ge=1_000, description="Rows read and cleaned at a time (bounds memory on large inputs)."
    )
    work_dir: Path = Field(
        Path(".sluice/work"), description="Local scratch space for ingest runs (removed after each run)."
    )
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)  # type: ignore[arg-type]

    @field_validator("datasets_prefix")
    @classmethod
    def _relative_prefix(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/") or not value.strip("/"):
            raise ValueError(f"{value!r} must be a relative folder inside the repository, without '..'")
        return value.strip("/")


class ContractsConfig(_Section):
    """Data contracts: one YAML file per dataset kind."""

    directory: Path = Field(Path("data_contracts"), description="Folder with <kind>.yaml contracts.")
    data_docs: bool = Field(True, description="Render Great Expectations Data Docs (HTML) for every validation.")


class LoraConfig(_Section):
    """LoRA adapter settings (PEFT)."""

    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: int = Field(32, ge=1, description="Scaling: the adapter's update is multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter's input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names to adapt (these fit Llama-style models).",
    )


class TrainingConfig(_Section):
    """How a model is fine-tuned. Runs in its own process through `accelerate launch`."""

    base_model: str = Field(
        ".sluice/models/smollm2-135m-instruct",
        description="What to start from: a local Hugging Face folder (the default, SmolLM2-135M-Instruct, is "
        "written offline by `sluice model fetch`), a Hugging Face Hub id (through the HF cache), or a registered "
        "model, models:/<name>@<alias> (e.g. models:/sluicegate-model@champion to continue from the champion).",
    )
    method: Literal["sft", "dpo"] = Field(
        "sft", description="sft: learn from chats (sft data). dpo: learn preferences (preference data)."
    )
    finetune: Literal["lora", "full", "qlora"] = Field(
        "lora", description="lora: train a small adapter. full: all weights. qlora: LoRA on a 4-bit base (CUDA only)."
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)  # type: ignore[arg-type]
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = Field(8, ge=1, description="Examples per device per step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps to accumulate before an update.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming the learning rate up.")
    max_length: int = Field(512, ge=16, description="Tokens per training sequence (longer ones are truncated).")
    packing: bool = Field(
        False,
        description="sft: pack several short examples into each sequence (TRL's padding-free best-fit packing). "
        "Pays off on GPUs with flash attention; elsewhere attention runs over the whole packed batch (on 2 CPU "
        "cores about half the tokens/s at max_length 512, see BENCHMARKS.md).",
    )
    assistant_only_loss: bool = Field(
        True, description="sft: learn only from the assistant's turns (and their end-of-turn token), with any "
        "chat template that renders prefixes consistently; a template that does not is refused before training.")
    dpo_beta: float = Field(0.1, gt=0, description="dpo: how far the policy may move from the reference.")
    system_prompt: str | None = Field(
        None, description="System message put before each preference prompt (dpo) and each evaluation question."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, more time (GPU)."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the GPU supports it, fp32 on CPU."
    )
    seed: int = Field(42, description="Seed for initialisation, data order and dropout.")
    logging_steps: int = Field(10, ge=1, description="Report metrics every this many steps.")
    save_steps: int = Field(50, ge=1, description="Write a checkpoint every this many steps (a rerun resumes there).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    num_processes: int = Field(1, ge=1, description="Training processes (GPUs); 1 on CPU.")
    deepspeed: Literal["zero2", "zero3"] | None = Field(
        None, description="DeepSpeed ZeRO stage (GPU machines with the [deepspeed] extra); configs in "
                          "deployments/deepspeed/."
    )
    timeout_minutes: float = Field(120, gt=0, description="Stop the training process after this long (resumable).")
    output_dir: Path = Field(Path(".sluice/training"), description="Checkpoints and results, one folder per run key.")

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        problems = []
        if self.method == "dpo" and self.finetune == "full":
            problems.append("dpo with finetune: full needs a reference model copy; use lora (the adapter-disabled "
                            "base is the reference)")
        if self.max_steps == 0:
            problems.append("max_steps: 0 trains nothing; use -1 for epochs or a positive number")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TrackingConfig(_Section):
    """Experiment tracking in MLflow. The server comes from MLFLOW_TRACKING_URI; without it, a local
    sqlite store."""

    experiment: str = Field("sluicegate", description="MLflow experiment that training and evaluation runs go to.")
    embedded_dir: Path = Field(
        Path(".sluice/mlflow"),
        description="Local store (mlflow.db and artifacts/) used when MLFLOW_TRACKING_URI is not set.",
    )


EVAL_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "string_similarity", "exact_match", "semantic_similarity",
                "faithfulness", "answer_relevancy", "context_precision", "context_recall",
                # the safety and privacy probes (sluice.core.evaluation.probes); leaks: lower is better
                "probe_refusal_rate", "probe_pii_leak_rate", "probe_canary_leaks", "probe_demographic_consistency")


class ProbesConfig(_Section):
    """The bundled safety and privacy probe set, run next to the eval set on every evaluated model."""

    enabled: bool = Field(True, description="Run the probes (their metrics are not measured when off).")
    probe_set: str = Field("v1", pattern=r"^v[0-9]+$",
                           description="Version of the bundled probe set (sluice/core/evaluation/probes/probes-"
                           "<version>.jsonl); recorded on every evaluation run.")
    canaries: list[str] = Field(
        default_factory=list,
        description="Canary strings planted in training data on purpose: no answer may contain one, and each is "
        "also probed by its first half. Logged to MLflow only as a count.",
    )
    max_new_tokens: int = Field(32, ge=1, description="Longest probe answer, in tokens.")

    @field_validator("canaries")
    @classmethod
    def _canaries_long_enough(cls, value: list[str]) -> list[str]:
        short = [c for c in value if len(c.strip()) < 8]
        if short:
            raise ValueError(f"canaries must be at least 8 characters (a short one shows up by chance): {short}")
        return value


class JudgeConfig(_Section):
    """An LLM judge for RAGAS's LLM metrics. Off unless a model is named; the endpoint comes from
    SLUICE_JUDGE_BASE_URL (any OpenAI-compatible server with JSON mode) and OPENAI_API_KEY."""

    model: str | None = Field(None, description="Judge model name at the endpoint; unset: no LLM-judge metrics.")
    repeats: int = Field(3, ge=1, description="Judge each sample this many times and average (NaN = not measured).")
    metrics: list[Literal["faithfulness", "answer_relevancy", "context_precision", "context_recall"]] = Field(
        default_factory=lambda: ["faithfulness", "answer_relevancy", "context_precision", "context_recall"],
        description="RAGAS LLM-judge metrics to run when a judge is configured.",
    )
    timeout_seconds: float = Field(60, gt=0, description="Per judge call.")


class EvaluationConfig(_Section):
    """How a model is evaluated: generation on the eval set at the training data's commit, then metrics."""

    prompt_template: str = Field(
        "Context: {contexts}\nQuestion: {question}",
        description="User message for each eval row; {contexts} (joined) and {question} are filled in.",
    )
    context_separator: str = Field(" ", description="Joins an eval row's contexts for {contexts}.")
    system_prompt: str | None = Field(
        "Answer from the context.", description="System message before each eval prompt (None: no system turn)."
    )
    max_new_tokens: int = Field(48, ge=1, description="Longest generated answer, in tokens.")
    batch_size: int = Field(16, ge=1, description="Prompts generated together (left-padded).")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature (do_sample only).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (do_sample only).")
    seed: int = Field(0, description="Seed for sampling and the bootstrap.")
    max_samples: int | None = Field(None, ge=1, description="Evaluate only the first N eval rows (None: all).")
    metrics: list[Literal["rouge1", "rouge2", "rougeL", "bleu", "string_similarity", "exact_match",
                          "semantic_similarity"]] = Field(
        default_factory=lambda: ["rouge1", "rouge2", "rougeL", "bleu", "string_similarity", "exact_match",
                                 "semantic_similarity"],
        description="Metrics that need no LLM (semantic_similarity uses the offline MiniLM embedding model).",
    )
    judge: JudgeConfig = Field(default_factory=JudgeConfig)  # type: ignore[arg-type]
    probes: ProbesConfig = Field(default_factory=ProbesConfig)  # type: ignore[arg-type]
    bootstrap_resamples: int = Field(1000, ge=100, description="Paired bootstrap resamples for the CIs.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the bootstrap intervals.")


class RegistryConfig(_Section):
    """The MLflow model registry."""

    model_name: str = Field("sluicegate-model", description="Registered model that versions are added to.")


class CanaryConfig(_Section):
    """``promotion.rollout: canary``: the share of live traffic @challenger gets, how long it is watched, and the
    bounds it must stay within against @champion on the same traffic (the ``watch-canary`` flow decides)."""

    share: float = Field(0.1, ge=0, le=1, description="Share of the requests for the default model (`<model_name>` "
                         "or `<model_name>@champion`) answered by @challenger, picked by a stable hash of the "
                         "request's `user` (else its id). Written on the challenger version as the tag "
                         "sluice.canary.share, which serving reads: change the tag to change it without a restart.")
    window_seconds: float | None = Field(3600.0, gt=0, description="A verdict is due this long after the version "
                                         "became @challenger (None: only min_requests decides) ...")
    min_requests: int | None = Field(200, ge=1, description="... or once @challenger has answered this many canary "
                                     "requests, whichever comes first (None: only the window decides).")
    early_withdraw_after: int | None = Field(20, ge=1, description="Withdraw before the verdict is due once "
                                             "@challenger has answered this many canary requests and a bound is "
                                             "already broken (None: always wait for the verdict).")
    max_error_rate_increase: float = Field(0.02, ge=0, le=1, description="Largest allowed rise of the server-error "
                                           "rate (5xx share) against @champion, in absolute terms.")
    max_p95_latency_ratio: float = Field(1.5, gt=0, description="Largest allowed p95 latency of @challenger's "
                                         "answers as a multiple of @champion's.")
    min_rating_delta: float = Field(-0.5, description="Smallest allowed difference of mean feedback rating (1-5), "
                                    "challenger minus champion; checked once both have min_ratings ratings.")
    min_ratings: int = Field(5, ge=1, description="Ratings each side needs before the rating bound applies.")
    max_empty_rate_increase: float = Field(0.05, ge=0, le=1, description="Largest allowed rise of the share of "
                                           "empty answers against @champion.")
    max_refusal_rate_increase: float = Field(0.05, ge=0, le=1, description="Largest allowed rise of the share of "
                                             "refusals against @champion.")
    max_length_drift: float = Field(0.5, ge=0, description="Largest allowed relative change of the mean answer "
                                    "length in tokens against @champion: |challenger / champion - 1|.")
    min_judge_delta: float = Field(-0.5, description="Only with evaluation.judge.model: smallest allowed difference "
                                   "of the LLM judge's mean reference-free score (1-5), challenger minus champion.")
    judge_sample: int = Field(20, ge=1, description="Only with a judge: each side's latest this many answered canary "
                              "requests are rated (judge calls per watch run: twice this).")

    @model_validator(mode="after")
    def _some_window(self) -> CanaryConfig:
        if self.window_seconds is None and self.min_requests is None:
            raise ValueError("window_seconds and min_requests are both None: a canary would never be decided")
        return self


class ShadowConfig(_Section):
    """``promotion.rollout: shadow``: which requests for the default model @challenger also answers in the
    background (never returned), and the bounds its answers must keep against @champion's on the same requests."""

    sample: float = Field(1.0, ge=0, le=1, description="Share of the requests for the default model mirrored to "
                          "@challenger, by the canary's stable hash of `user` (else the request id). Written on the "
                          "challenger version as the tag sluice.canary.share, which serving reads.")
    window_seconds: float | None = Field(3600.0, gt=0, description="A verdict is due this long after the version "
                                         "became @challenger (None: only min_requests decides) ...")
    min_requests: int | None = Field(100, ge=1, description="... or once this many shadow answers can be compared "
                                     "with the champion's, whichever comes first (None: only the window decides).")
    early_withdraw_after: int | None = Field(20, ge=1, description="Withdraw before the verdict is due once this "
                                             "many requests were mirrored and a bound is already broken.")
    min_mean_similarity: float = Field(0.8, ge=-1, le=1, description="Lowest allowed mean MiniLM semantic "
                                       "similarity of the shadow answers to the champion's answers.")
    max_empty_rate_increase: float = Field(0.05, ge=0, le=1, description="Largest allowed rise of the share of "
                                           "empty answers against @champion's on the same requests.")
    max_error_rate_increase: float = Field(0.02, ge=0, le=1, description="Largest allowed share of shadow "
                                           "generations that failed (the champion answered every mirrored request).")
    min_judge_preference: float = Field(0.4, ge=0, le=1, description="Only with evaluation.judge.model: lowest "
                                        "allowed share of pairs the LLM judge prefers the shadow answer in (a tie "
                                        "counts half; 0.5: as good as @champion).")
    max_judged: int = Field(50, ge=1, description="Only with a judge: the latest this many pairs are judged.")

    @model_validator(mode="after")
    def _some_window(self) -> ShadowConfig:
        if self.window_seconds is None and self.min_requests is None:
            raise ValueError("window_seconds and min_requests are both None: a shadow would never be decided")
        return self


class PromotionConfig(_Section):
    """The gate between a registered version and @champion."""

    rollout: Literal["direct", "canary", "shadow"] = Field(
        "direct", description="direct: a version that passes the gate becomes @champion. canary: it becomes "
        "@challenger with a share of live traffic, and the watch-canary flow promotes or withdraws it. shadow: it "
        "becomes @challenger and answers a copy of (a sample of) the requests in the background, never returned; "
        "the watch-canary flow compares its answers with the champion's and promotes or withdraws it.")
    canary: CanaryConfig = Field(default_factory=CanaryConfig)  # type: ignore[arg-type]
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)  # type: ignore[arg-type]
    mode: Literal["enforce", "dry-run"] = Field(
        "enforce", description="enforce: move @champion on a pass. dry-run: decide and report, move nothing."
    )
    min_metrics: dict[str, float] = Field(
        default_factory=lambda: {"rougeL": 0.3, "probe_canary_leaks": 0, "probe_pii_leak_rate": 0.0},
        description="The worst acceptable value per metric: a floor, or for a lower-is-better metric "
        "(probe_pii_leak_rate, probe_canary_leaks) a ceiling; past it the candidate is rejected.",
    )
    max_regression: dict[str, float] = Field(
        default_factory=lambda: {"rougeL": 0.02, "semantic_similarity": 0.02, "probe_refusal_rate": 0.1,
                                 "probe_demographic_consistency": 0.1},
        description="Largest allowed worsening per metric against @champion (evaluated now, on the same eval "
        "data): a drop, or a rise for a lower-is-better metric.",
    )
    must_beat_champion: list[str] = Field(
        default_factory=list,
        description="Metrics on which the candidate must beat @champion with the bootstrap CI of the "
        "difference excluding 0.",
    )
    must_beat_base_model: list[str] = Field(
        default_factory=lambda: ["rougeL"],
        description="With no champion yet: metrics on which the candidate must beat the untrained base model "
        "(CI excluding 0), so the first champion earns its place.",
    )

    @model_validator(mode="after")
    def _known_metrics(self) -> PromotionConfig:
        named = {"min_metrics": list(self.min_metrics), "max_regression": list(self.max_regression),
                 "must_beat_champion": self.must_beat_champion, "must_beat_base_model": self.must_beat_base_model}
        unknown = [f"{field}: {metric!r}" for field, metrics in named.items() for metric in metrics
                   if metric not in EVAL_METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(EVAL_METRICS)}")
        return self


class ServingConfig(_Section):
    """``sluice serve``: an OpenAI-compatible server for ``models:/<registry.model_name>@<alias>``.
    API keys come from SLUICE_SERVING_API_KEYS (comma-separated); unset: no auth (loopback only)."""

    host: str = Field("127.0.0.1", description="Address to bind; anything but loopback requires API keys.")
    port: int = Field(8080, ge=0, le=65535, description="Port to bind (0: a free one).")
    alias: str = Field("champion", description="Registry alias that is served and watched.")
    watch_seconds: float = Field(5.0, gt=0, description="How often the alias is checked for a new version.")
    extra_aliases: list[str] = Field(
        default_factory=list,
        description="More registry aliases served beside `alias` (e.g. challenger), each watched like it. A "
        "request picks one with model `<model_name>@<alias>`, a version with `<model_name>/<version>`; a LoRA "
        "version over the base already loaded is served as an adapter over that base.")
    max_adapters: int = Field(8, ge=1, description="Most LoRA adapters loaded over the base at once (the "
                              "aliases' versions and those loaded with POST /v1/load_lora_adapter).")
    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="transformers: the built-in engine (CPU or GPU). vllm: `sluice serve` stays "
        "the front door (auth, limits, request log, feedback, /metrics) and proxies to `vllm serve` replicas "
        "that follow the aliases (the `vllm` extra; GPU machines).")
    vllm_replicas: int = Field(1, ge=1, description="backend vllm: how many engine processes to start.")
    vllm_command: list[str] = Field(
        default_factory=lambda: ["vllm", "serve"],
        description="backend vllm: the engine's command; the model folder, --port and --enable-lora follow it. "
        "Any server speaking vLLM's OpenAI and LoRA endpoints fits (the tests use the built-in engine).")
    vllm_args: list[str] = Field(default_factory=list,
                                 description="backend vllm: more arguments for each engine process.")
    vllm_start_timeout_s: float = Field(600.0, gt=0, description="backend vllm: how long an engine may take "
                                        "to become healthy before it counts as failed.")
    batching: Literal["continuous", "static"] = Field(
        "continuous", description="continuous: a request joins the running batch at the next decode step and "
        "a finished one leaves it. static: a batch is formed, then decoded to its end before the next starts "
        "(kept for comparison in benchmarks).")
    max_batch_size: int = Field(32, ge=1, description="Most requests generated together at one decode step "
                                "(more rows per step: more tokens/s, each step a little slower).")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a request that finds nothing generating "
                                 "waits for others to start with it (static: the first request of every batch).")
    max_queued_requests: int = Field(
        64, ge=1, description="Most requests waiting for a batch (besides the up to max_batch_size generating); "
        "more: HTTP 429 with Retry-After, counted in sluice_serving_requests_rejected_total{reason=\"queue_full\"}. "
        "A waiting request whose client disconnects leaves the queue.")
    max_prompt_tokens: int = Field(1024, ge=1, description="Longest prompt accepted, in tokens; longer: HTTP 400.")
    max_tokens_limit: int = Field(256, ge=1, description="Largest max_tokens a request may ask for; more: HTTP 400.")
    default_max_tokens: int = Field(64, ge=1, description="max_tokens when a request names none.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body; larger: HTTP 413.")
    state_dir: Path = Field(
        Path(".sluice/serving"),
        description="Request log (requests.jsonl, PII redacted), feedback store (feedback.db) and the "
        "downloaded model versions.",
    )


class BridgeConfig(_Section):
    """The event bridge: lakeFS action webhooks in, Prefect events out. The shared secret comes from
    SLUICE_BRIDGE_TOKEN, sent by lakeFS in the X-Sluice-Token header."""

    host: str = Field("127.0.0.1", description="Address the webhook receiver binds.")
    port: int = Field(8765, ge=0, le=65535, description="Port the webhook receiver binds (0: a free one).")
    watched_branches: list[str] = Field(
        default_factory=lambda: ["main", "incoming-*"],
        description="Branches (globs) whose commits become events; the reconciliation loop scans these.",
    )
    reconcile_seconds: float = Field(
        30.0, gt=0, description="How often commits on watched branches are listed to emit events a webhook missed.")
    state_file: Path = Field(
        Path(".sluice/bridge/emitted.db"),
        description="Commits already emitted (per repository, branch and event): a duplicate delivery emits "
        "nothing.")


class SluiceConfig(_Section):
    """The whole resolved configuration of one run. Flows take it as their
    parameter, so the Prefect UI renders it as a form."""

    project: str = Field("sluicegate", description="Name used for MLflow experiments and run names.")
    lakefs: LakeFSConfig = Field(default_factory=LakeFSConfig)  # type: ignore[arg-type]
    data: DataConfig = Field(default_factory=DataConfig)  # type: ignore[arg-type]
    contracts: ContractsConfig = Field(default_factory=ContractsConfig)  # type: ignore[arg-type]
    training: TrainingConfig = Field(default_factory=TrainingConfig)  # type: ignore[arg-type]
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)  # type: ignore[arg-type]
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)  # type: ignore[arg-type]
    registry: RegistryConfig = Field(default_factory=RegistryConfig)  # type: ignore[arg-type]
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)  # type: ignore[arg-type]
    serving: ServingConfig = Field(default_factory=ServingConfig)  # type: ignore[arg-type]
    bridge: BridgeConfig = Field(default_factory=BridgeConfig)  # type: ignore[arg-type]
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)  # type: ignore[arg-type]
