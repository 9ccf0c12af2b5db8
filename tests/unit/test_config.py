"""The layered, typed configuration: defaults → files → dotted overrides,
with every problem reported at once and where it came from."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sluice.core.config import ConfigError, Environment, SluiceConfig, env_file_for, load_config, parse_override


def _yaml(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_are_the_embedded_setup():
    config = load_config()
    assert config == SluiceConfig()
    assert config.lakefs.repository == "sluice-data"
    assert config.lakefs.default_branch == "main"
    assert config.lakefs.storage_namespace.startswith("local://")


def test_later_layers_win(tmp_path):
    env = _yaml(tmp_path, "env.yaml", """
        lakefs:
          repository: from-env
          storage_namespace: local://env
    """)
    experiment = _yaml(tmp_path, "exp.yaml", """
        lakefs:
          repository: from-experiment
    """)
    config = load_config([env, experiment], ["lakefs.default_branch=trunk"])
    assert config.lakefs.repository == "from-experiment"  # experiment over env
    assert config.lakefs.storage_namespace == "local://env"  # env over defaults, untouched later
    assert config.lakefs.default_branch == "trunk"  # override over everything
    assert load_config([env], ["lakefs.repository=from-cli"]).lakefs.repository == "from-cli"


def test_override_values_are_typed_yaml():
    assert parse_override("a.b=2e-4") == (("a", "b"), 2e-4)
    assert parse_override("a=true") == (("a",), True)
    assert parse_override("a=[x, y]") == (("a",), ["x", "y"])
    assert parse_override("a.b=text with spaces") == (("a", "b"), "text with spaces")
    assert load_config(overrides=["lakefs.embedded_port=9001"]).lakefs.embedded_port == 9001


@pytest.mark.parametrize("bad", ["no-equals-sign", "=value", "a..b=1", ".a=1"])
def test_malformed_overrides_are_errors(bad):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[bad])
    assert "expected dotted.key=value" in str(err.value)


def test_every_problem_is_reported_at_once_with_its_origin(tmp_path):
    experiment = _yaml(tmp_path, "exp.yaml", """
        lakefs:
          repository: Not_Valid
          default_branch: has/slash
          colour: blue
        data:
          datasets_prefix: ../escape
    """)
    with pytest.raises(ConfigError) as err:
        load_config([experiment], ["lakefs.embedded_port=not-a-number", "nosuchsection.x=1"])
    problems = err.value.problems
    assert len(problems) == 6, problems
    text = "\n".join(problems)
    assert f"lakefs.repository ({experiment}:3)" in text
    assert f"lakefs.default_branch ({experiment}:4)" in text
    assert f"lakefs.colour ({experiment}:5): unknown key" in text
    assert f"data.datasets_prefix ({experiment}:7)" in text
    assert "lakefs.embedded_port (override 'lakefs.embedded_port=not-a-number')" in text
    assert "nosuchsection (override 'nosuchsection.x=1'): unknown key" in text


def test_secrets_and_endpoints_in_files_are_refused(tmp_path):
    leaky = _yaml(tmp_path, "leaky.yaml", """
        lakefs:
          endpoint: http://lakefs:8000
          secret_access_key: hunter2
    """)
    with pytest.raises(ConfigError) as err:
        load_config([leaky])
    text = str(err.value)
    assert "set LAKECTL_SERVER_ENDPOINT_URL instead" in text
    assert "set LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY instead" in text
    assert f"{leaky}:3" in text and f"{leaky}:4" in text
    assert "hunter2" not in text  # never echo a secret


def test_missing_and_broken_files_are_reported(tmp_path):
    broken = _yaml(tmp_path, "broken.yaml", "lakefs: [unclosed\n")
    listing = _yaml(tmp_path, "list.yaml", "- just\n- a list\n")
    with pytest.raises(ConfigError) as err:
        load_config([tmp_path / "missing.yaml", broken, listing])
    text = str(err.value)
    assert f"{tmp_path / 'missing.yaml'} does not exist" in text
    assert f"{broken}:" in text and "not valid YAML" in text
    assert "top level must be a mapping" in text


def test_environment_holds_endpoints_and_masks_secrets():
    env = Environment.from_os({
        "LAKECTL_SERVER_ENDPOINT_URL": "http://lakefs:8000",
        "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": "AKIA123",
        "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": "very-secret",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    })
    assert env.lakefs_endpoint == "http://lakefs:8000"
    assert env.lakefs_secret_access_key is not None
    assert env.lakefs_secret_access_key.get_secret_value() == "very-secret"
    assert "very-secret" not in repr(env) and "very-secret" not in str(env.model_dump())
    assert Environment.from_os({}).lakefs_endpoint is None


def test_environment_file_is_chosen_by_name_or_variable(monkeypatch):
    assert env_file_for("local") == Path("configs/env/local.yaml")
    monkeypatch.setenv("SLUICE_ENV", "production")
    assert env_file_for(None) == Path("configs/env/production.yaml")
    monkeypatch.delenv("SLUICE_ENV")
    assert env_file_for(None) is None


def test_config_is_a_valid_flow_parameter_schema():
    """Flows take SluiceConfig as a parameter; Prefect renders its JSON schema
    as the run form, with the field descriptions as help."""
    schema = SluiceConfig.model_json_schema()
    lakefs = schema["$defs"]["LakeFSConfig"]["properties"]
    assert "description" in lakefs["repository"]
    assert SluiceConfig.model_validate(SluiceConfig().model_dump(mode="json")) == SluiceConfig()


def test_pii_pattern_names_are_data_not_secrets():
    config = load_config(overrides=["data.cleaning.pii_patterns={api_key: 'sk-[A-Za-z0-9]{20,}'}"])
    assert config.data.cleaning.pii_patterns == {"api_key": "sk-[A-Za-z0-9]{20,}"}


def test_cleaning_cross_field_bounds_are_checked():
    with pytest.raises(ConfigError, match="min_tokens .10. is greater than max_tokens .5."):
        load_config(overrides=["data.cleaning.min_tokens=10", "data.cleaning.max_tokens=5"])
