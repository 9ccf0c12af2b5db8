"""What the README promises a new user, checked against the code: every `sluice` command is documented, the
environment-variable table names every variable a user sets, and constraints.txt points at a README section
that exists."""

from __future__ import annotations

import re

from sluice.shell.cli.root import app
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def _section(title: str) -> str:
    """The README's `## title` section."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def test_every_command_is_in_the_readme():
    commands = [command.name or command.callback.__name__ for command in app.registered_commands]
    commands += [f"{group.name} {command.name or command.callback.__name__}"
                 for group in app.registered_groups for command in group.typer_instance.registered_commands]
    assert [name for name in commands if f"sluice {name}" not in README] == []


def test_the_exit_codes_are_documented():
    table = _section("The `sluice` command")
    for status in ("| 0 |", "| 1 |", "| 2 |"):
        assert status in table


def test_the_environment_table_names_the_variables_users_set():
    table = _section("Configuration")
    for variable in ("SLUICE_ENV", "SLUICE_SERVING_URL", "SLUICE_SERVING_API_KEYS", "SLUICE_BRIDGE_TOKEN",
                     "SLUICE_JUDGE_BASE_URL", "OPENAI_API_KEY", "SLUICE_STACK_DIR", "LAKECTL_SERVER_ENDPOINT_URL"):
        assert f"`{variable}`" in table, variable


def test_constraints_point_at_a_readme_section_that_exists():
    header = "".join(line for line in (REPO_ROOT / "constraints.txt").read_text().splitlines(keepends=True)
                     if line.startswith("#"))
    named = re.findall(r"README(?:'s|,) '([^']+)'", header)
    assert named, header
    headings = set(re.findall(r"^## (.+)$", README, flags=re.MULTILINE))
    assert [name for name in named if name not in headings] == []
