"""Prompts versioned with the model: the system prompt and the prompt template a version was trained and
evaluated with live in MLflow's prompt registry, one prompt name per kind and registered model
(``<model>-system``, ``<model>-template``, ``<model>-training-system``), and each model version names the
prompt versions it goes with.

The link is a model version tag ``sluice.prompt.<kind>`` = ``prompts:/<name>/<version>`` (MLflow 3.17 links
prompts to logged models, runs and traces, not to registered model versions), plus MLflow's own link to the
version's logged model where it has one, so MLflow's UI lists the prompts on the model too. A prompt text gets a
new prompt version only when it changed; the digest of the set (``sluice.prompts_digest``) makes a version with
changed prompts a new model version (a new candidate through the gate), even on unchanged weights.
"""

from __future__ import annotations

import hashlib
import json
import threading

from pydantic import BaseModel

from sluice.core import lineage
from sluice.core.config import EvaluationConfig, TrainingConfig
from sluice.core.registry.client import ModelRegistry, _registry_store_sees

SYSTEM, TEMPLATE, TRAINING_SYSTEM = "system", "template", "training_system"
_PROMPT_NAME_SUFFIX = {SYSTEM: "system", TEMPLATE: "template", TRAINING_SYSTEM: "training-system"}


class PromptSet(BaseModel):
    """The prompt texts of one candidate; None: that prompt is not used."""

    system: str | None  # evaluation.system_prompt: the system turn the gate measured; serving prepends it
    template: str  # evaluation.prompt_template (Python str.format with {contexts} and {question})
    training_system: str | None = None  # training.system_prompt (dpo prompts without a system turn)

    def texts(self) -> dict[str, str]:
        return {kind: text for kind, text in self.model_dump().items() if text is not None}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:24]


class PromptRefs(BaseModel):
    """Where a prompt set is in the prompt registry: kind → ``prompts:/<name>/<version>``."""

    uris: dict[str, str]
    digest: str

    def version_tags(self) -> dict[str, str]:
        """The model version's tags that name its prompts."""
        return {**{lineage.PROMPT_TAG_PREFIX + kind: uri for kind, uri in self.uris.items()},
                lineage.PROMPTS_DIGEST: self.digest}


def prompt_set(training: TrainingConfig, evaluation: EvaluationConfig) -> PromptSet:
    return PromptSet(system=evaluation.system_prompt or None, template=evaluation.prompt_template,
                     training_system=training.system_prompt or None)


def prompt_name(model_name: str, kind: str) -> str:
    return f"{model_name}-{_PROMPT_NAME_SUFFIX[kind]}"


def register_prompts(registry: ModelRegistry, prompts: PromptSet) -> PromptRefs:
    """Each prompt text in the prompt registry, a new prompt version only for a text not registered before."""
    uris = {kind: _register_text(registry, prompt_name(registry.model_name, kind), text)
            for kind, text in prompts.texts().items()}
    return PromptRefs(uris=uris, digest=prompts.digest())


def _register_text(registry: ModelRegistry, name: str, text: str) -> str:
    existing = _version_with_text(registry, name, text)
    if existing is not None:
        return existing
    version = registry.client.register_prompt(name, text, commit_message=f"used by {registry.model_name}",
                                              tags={"sluice.model": registry.model_name})
    return str(version.uri)


def _version_with_text(registry: ModelRegistry, name: str, text: str) -> str | None:
    """The prompt version holding exactly ``text``; None when there is none (or no such prompt yet)."""
    if registry.client.get_prompt(name) is None:
        return None
    token = None
    while True:
        page = registry.client.search_prompt_versions(name, max_results=100, page_token=token)
        match = next((v for v in page if v.template == text), None)
        if match is not None:
            return str(match.uri)
        token = page.token
        if not token:
            return None


def link_prompts(registry: ModelRegistry, version: str, refs: PromptRefs) -> None:
    """Name the prompts on the model version (its tags) and link them to its logged model (MLflow's link)."""
    registry.tag(version, refs.version_tags())
    model_id = _logged_model_id(registry, version)
    if not model_id:
        return  # registered from a run's artifact folder (before logged models): the tags are the link
    for uri in refs.uris.values():
        name, prompt_version = _split(uri)
        # MLflow's default store implementation reads the logged model through the process-wide tracking store
        with _registry_store_sees(registry.target):
            registry.client.link_prompt_version_to_model(name, prompt_version, model_id)


def _logged_model_id(registry: ModelRegistry, version: str) -> str | None:
    """The logged model a version was registered from: its ``model_id``, which the sqlite store leaves empty,
    else its source ``models:/<model id>``; None for a version registered from a folder."""
    registered = registry.client.get_model_version(registry.model_name, version)
    if getattr(registered, "model_id", None):
        return str(registered.model_id)
    rest = registered.source.removeprefix("models:/") if registered.source.startswith("models:/") else ""
    return rest if rest and "/" not in rest and "@" not in rest else None


def _split(uri: str) -> tuple[str, str]:
    name, _, version = uri.removeprefix("prompts:/").rpartition("/")
    return name, version


def version_prompt_uris(registry: ModelRegistry, version: str) -> dict[str, str]:
    """kind → ``prompts:/…`` linked to a model version (empty for a version registered before prompts were)."""
    tags = registry.client.get_model_version(registry.model_name, version).tags
    return {key.removeprefix(lineage.PROMPT_TAG_PREFIX): value for key, value in tags.items()
            if key.startswith(lineage.PROMPT_TAG_PREFIX)}


def linked_prompts(registry: ModelRegistry, version: str) -> PromptSet | None:
    """The prompt set linked to a model version; None for a version registered before prompts were tracked."""
    uris = version_prompt_uris(registry, version)
    if TEMPLATE not in uris:
        return None
    texts = {kind: str(registry.client.load_prompt(uri).template) for kind, uri in uris.items()}
    return PromptSet(system=texts.get(SYSTEM), template=texts[TEMPLATE], training_system=texts.get(TRAINING_SYSTEM))


def evaluation_as_served(evaluation: EvaluationConfig, prompts: PromptSet | None) -> EvaluationConfig:
    """The evaluation settings with a version's own system prompt and template (those it is served with), so
    that a gate between versions that differ only by prompts measures the prompt change; ``prompts`` None (a
    version without linked prompts): the settings as given."""
    if prompts is None:
        return evaluation
    return evaluation.model_copy(update={"system_prompt": prompts.system, "prompt_template": prompts.template})


def linked_system_prompt(registry: ModelRegistry, version: str) -> str | None:
    """The system prompt text linked to a model version; None when it has none."""
    uri = version_prompt_uris(registry, version).get(SYSTEM)
    return None if uri is None else str(registry.client.load_prompt(uri).template)


class ServedSystemPrompts:
    """The linked system prompt of each served version, read from the registry once per version
    (a version's tags are written before it can be served, and a prompt version never changes)."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry
        self._known: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def of(self, version: str) -> str | None:
        with self._lock:
            if version in self._known:
                return self._known[version]
        text = linked_system_prompt(self.registry, version)  # errors propagate and are not cached
        with self._lock:
            self._known[version] = text
        return text


def with_system_prompt(messages: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """``messages`` with the version's system turn first, when it has one and the request brought none."""
    if system is None or any(m.get("role") == "system" for m in messages):
        return messages
    return [{"role": "system", "content": system}, *messages]
