"""Resolving the layers into one :class:`SluiceConfig`: YAML files (with the
line of every key), then dotted overrides; every problem in the merged layers
is collected and reported at once, each with the file and line (or override)
it came from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sluice.core.config.sections import SluiceConfig
from sluice.core.config.yaml_lines import load_yaml_text, load_yaml_with_lines
from sluice.core.errors import USAGE, ExplainedError

# Keys that look like endpoints or secrets, and the variable to use instead.
_ENVIRONMENT_ONLY_KEYS = {
    "endpoint": "LAKECTL_SERVER_ENDPOINT_URL",
    "endpoint_url": "LAKECTL_SERVER_ENDPOINT_URL",
    "access_key_id": "LAKECTL_CREDENTIALS_ACCESS_KEY_ID",
    "secret_access_key": "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY",
    "password": "the service's own environment variable",
    "secret": "the service's own environment variable",
    "token": "the service's own environment variable",
    "api_key": "the service's own environment variable",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "api_url": "PREFECT_API_URL",
}


class ConfigError(ExplainedError, ValueError):
    """All problems found in a configuration, each naming where it came from."""

    exit_code = USAGE

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


@dataclass
class _Layers:
    """Merged raw values plus where each dotted key was last set."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[tuple[str, ...], str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def merge(self, data: Mapping[str, Any], origins: Mapping[tuple[str, ...], str]) -> None:
        _deep_merge(self.values, data)
        self.origins.update(origins)

    def origin_of(self, loc: tuple[str, ...]) -> str:
        """The most specific recorded origin for a key, or 'defaults'."""
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.origins:
                return self.origins[loc[:end]]
        deeper = [origin for key, origin in self.origins.items() if key[: len(loc)] == loc]
        return deeper[0] if deeper else "defaults"


def _deep_merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


# Maps whose keys are user data (names of things), not settings.
_FREE_FORM_MAPS = {("data", "cleaning", "pii_patterns")}


def _environment_only_problems(data: Any, loc: tuple[str, ...], origins: Mapping) -> list[str]:
    problems: list[str] = []
    if isinstance(data, Mapping) and loc not in _FREE_FORM_MAPS:
        for key, value in data.items():
            here = (*loc, str(key))
            if str(key).lower() in _ENVIRONMENT_ONLY_KEYS:
                problems.append(
                    f"{'.'.join(here)} ({origins.get(here, '?')}): endpoints and secrets are read from the "
                    f"environment, never from config files; set {_ENVIRONMENT_ONLY_KEYS[str(key).lower()]} instead"
                )
            problems += _environment_only_problems(value, here, origins)
    return problems


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``a.b.c=value`` → (("a","b","c"), value); the value is read as YAML, so
    ``2e-4`` is a float, ``true`` a bool and ``[a, b]`` a list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError([f"override {text!r}: expected dotted.key=value"])
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError([f"override {text!r}: value is not valid YAML ({exc})"]) from exc
    return tuple(key.split(".")), value


def _nest(loc: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cursor = out
    for part in loc[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[loc[-1]] = value
    return out


def env_file_for(name: str | None, root: Path = Path("configs/env")) -> Path | None:
    """The environment file named by ``name`` or ``$SLUICE_ENV`` (none: defaults only)."""
    name = name or os.environ.get("SLUICE_ENV")
    return root / f"{name}.yaml" if name else None


def load_config(
    files: Iterable[Path | str] = (),
    overrides: Iterable[str] = (),
) -> SluiceConfig:
    """Resolve defaults → each YAML file in order → dotted overrides.

    Raises :class:`ConfigError` listing every problem with its origin.
    """
    layers = _Layers()
    for file in files:
        path = Path(file)
        if not path.is_file():
            layers.problems.append(f"config file {path} does not exist")
            continue
        try:
            data, origins = load_yaml_with_lines(path)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            layers.problems.append(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})")
            continue
        if data is None:
            continue
        if not isinstance(data, Mapping):
            layers.problems.append(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
            continue
        layers.problems += _environment_only_problems(data, (), origins)
        layers.merge(data, origins)

    for text in overrides:
        try:
            loc, value = parse_override(text)
        except ConfigError as exc:
            layers.problems += exc.problems
            continue
        layers.problems += _environment_only_problems(_nest(loc, value), (), {loc: f"override {text!r}"})
        layers.merge(_nest(loc, value), {loc: f"override {text!r}"})

    try:
        config = SluiceConfig.model_validate(layers.values)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (not a field of this section)"
            layers.problems.append(f"{'.'.join(loc)} ({layers.origin_of(loc)}): {message}")
        config = None

    if layers.problems:
        raise ConfigError(layers.problems)
    assert config is not None
    return config


def config_to_yaml(config: BaseModel) -> str:
    """The resolved config as YAML, the same shape the files use."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
