"""Training configuration: precedence, validation with clear errors, TOML round trip."""

import pytest

from boltzflow.errors import BoltzflowError
from boltzflow.io import dumps_toml, read_toml, write_toml
from boltzflow.training.config import DEFAULTS, PRESETS, parse_assignment, resolve_config


def test_defaults_resolve_and_name_the_system():
    config = resolve_config("alanine-dipeptide")
    assert config["system"] == "alanine-dipeptide"
    assert config["objective"] == "rkl" and config["model"] == DEFAULTS["model"]


def test_the_default_preset_anneals_reverse_kl_only():
    """Its annealing applies to rkl; other objectives train at the target temperature unless
    annealing is asked for explicitly."""
    assert resolve_config("alanine-dipeptide")["anneal"]["start"] == 600.0
    for objective in ("fab", "snf"):
        assert resolve_config("alanine-dipeptide", options={"objective": objective})["anneal"]["start"] == 0.0
    fab = resolve_config("alanine-dipeptide", options={"objective": "fab"}, assignments=["anneal.start=900"])
    assert fab["anneal"]["start"] == 900.0 and fab["anneal"]["refit"] == DEFAULTS["anneal"]["refit"]
    assert resolve_config("alanine-dipeptide", assignments=["anneal.start=0"])["anneal"]["start"] == 0.0


def test_precedence_preset_file_options_assignments(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('steps = 7\nlr = 1e-3\n[fab]\nn_intermediate = 3\n')
    config = resolve_config("alanine-dipeptide", "literature", path, {"lr": 2e-3, "seed": None},
                            ["fab.n_intermediate=5", "model.hidden=[64, 64]"])
    assert config["batch_size"] == PRESETS["literature"]["batch_size"]   # preset over defaults
    assert config["steps"] == 7                                          # file over preset
    assert config["lr"] == 2e-3                                          # option over file
    assert config["seed"] == DEFAULTS["seed"]                            # None: not given
    assert config["fab"]["n_intermediate"] == 5                          # --set over file
    assert config["model"]["hidden"] == [64, 64]
    assert config["model"]["layers"] == PRESETS["literature"]["model"]["layers"]


@pytest.mark.parametrize("kwargs, message", [
    ({"assignments": ["fab.n_intermediat=3"]}, "unknown setting 'fab.n_intermediat'"),
    ({"assignments": ["steps=many"]}, "'steps' must be int"),
    ({"assignments": ["model=3"]}, "'model' must be a table"),
    ({"options": {"objective": "kl"}}, "expected rkl | ml | snf | fab"),
    ({"options": {"objective": "ml"}}, "objective 'ml' needs data"),
    ({"assignments": ["steps"]}, "write KEY=VALUE"),
    ({"preset": "huge"}, "unknown preset 'huge'"),
    ({"assignments": ['model.base="gaussian"']}, "expected thermal | uniform"),
    ({"assignments": ["anneal.start=1200", "objective=\"snf\""]}, "rkl and fab objectives"),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(BoltzflowError, match=message.replace("|", r"\|").replace("(", r"\(")):
        resolve_config("alanine-dipeptide", **kwargs)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("steps = = 3\n")
    with pytest.raises(BoltzflowError, match="bad.toml: not valid TOML"):
        resolve_config("alanine-dipeptide", config_file=path)
    with pytest.raises(BoltzflowError, match="no such file"):
        resolve_config("alanine-dipeptide", config_file=tmp_path / "missing.toml")


def test_assignment_values_are_read_as_toml():
    assert parse_assignment("fab.spacing=geometric") == {"fab": {"spacing": "geometric"}}
    assert parse_assignment("lr=3e-4") == {"lr": 3e-4}
    assert parse_assignment("energy.compile=true") == {"energy": {"compile": True}}


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = resolve_config("alanine-dipeptide", assignments=["time_limit=\"3h\"", "temperature=450.5"])
    write_toml(tmp_path / "config.toml", config)
    assert read_toml(tmp_path / "config.toml") == config
    assert resolve_config(options=read_toml(tmp_path / "config.toml")) == config
    assert 'system = "alanine-dipeptide"' in dumps_toml(config)
