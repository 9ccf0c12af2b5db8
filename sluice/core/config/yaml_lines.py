"""YAML for human-edited files: YAML 1.2 floats, and the line of every key,
so errors can say where a value came from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``2e-4`` as a float (YAML 1.2); PyYAML's
    YAML 1.1 rules would make it a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def load_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def load_yaml_with_lines(path: Path) -> tuple[Any, dict[tuple[str, ...], str]]:
    """Parse a YAML file and record ``file:line`` for every mapping key,
    keyed by its path of keys."""
    text = path.read_text(encoding="utf-8")
    node = yaml.compose(text, Loader=_Loader)
    origins: dict[tuple[str, ...], str] = {}

    def walk(n: yaml.Node, loc: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = (*loc, str(key_node.value))
                origins[key] = f"{path}:{key_node.start_mark.line + 1}"
                walk(value_node, key)
        elif isinstance(n, yaml.SequenceNode):
            for index, item in enumerate(n.value):
                walk(item, (*loc, str(index)))

    if node is not None:
        walk(node, ())
    return load_yaml_text(text), origins
