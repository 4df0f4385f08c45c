"""Typed settings: the round trip to config.toml's keys, one registry per family, and an
objective added by one registry entry alone."""

import re
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from boltzflow.cli.app import app
from boltzflow.errors import BoltzflowError, invalid_setting
from boltzflow.io import read_toml
from boltzflow.sampling import KERNELS
from boltzflow.training.config import DEFAULTS, PRESETS, resolve_config
from boltzflow.training.objectives import Objective, reverse_kl
from boltzflow.training.run import load_run, train
from boltzflow.training.settings import BASES, OBJECTIVES, Settings


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_settings_round_trip_to_the_configuration(preset, objective):
    config = resolve_config("alanine-dipeptide", preset, options={"objective": objective},
                            assignments=['data="md.h5"'])
    settings = Settings.from_config(config)
    assert settings.as_config() == config and list(settings.as_config()) == list(config)
    assert settings.kind is OBJECTIVES[objective] and settings.base_kind is BASES[config["model"]["base"]]
    assert settings.batch_size == config["batch_size"] and settings.model.hidden == config["model"]["hidden"]


def test_every_registered_objective_has_its_table_and_the_cli_names_it():
    """config.toml has one table per objective with settings, with the dataclass's defaults,
    and `boltzflow train --help` lists every objective."""
    for name, objective in OBJECTIVES.items():
        if objective.settings is not None:
            assert DEFAULTS[name] == Settings().sections[name].__dict__
    help_text = re.sub(r"\s+", " ", CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output)
    for name in OBJECTIVES:
        assert re.search(rf"\b{name}\b", help_text), name


@pytest.mark.parametrize("assignment, message", [
    ('snf.kernel="gibbs"', "setting 'snf.kernel' = 'gibbs': expected " + " | ".join(KERNELS)),
    ('fab.spacing="cubic"', "setting 'fab.spacing' = 'cubic': expected linear | geometric"),
    ("rkl.forward_weight=-1", "setting 'rkl.forward_weight' = -1.0: expected a weight >= 0"),
    ("model.hidden=[]", "setting 'model.hidden' = []"),
    ("anneal.first_fraction=1", "setting 'anneal.first_fraction' = 1.0"),
])
def test_each_table_checks_its_own_values(assignment, message):
    with pytest.raises(BoltzflowError, match=re.escape(message)):
        resolve_config("alanine-dipeptide", assignments=[assignment])


@dataclass
class HalfSettings:
    """The toy objective's table: the factor of its loss."""

    factor: float = 0.5

    def check(self) -> None:
        if not self.factor > 0:
            raise invalid_setting("half.factor", self.factor, "a positive factor")


def half_loss(run, model, batch, data):
    factor = run.settings.sections["half"].factor
    return lambda step: (lambda loss, stats: (factor * loss, stats))(*reverse_kl(model, run.target, batch))


def test_an_objective_is_one_registry_entry(monkeypatch, tmp_path):
    """A new objective, registered and nothing else: configured, checked, trained, written
    to config.toml and loaded again."""
    monkeypatch.setitem(OBJECTIVES, "half", Objective("half", half_loss, settings=HalfSettings))
    with pytest.raises(BoltzflowError, match="'half.factor' = -1.0: expected a positive factor"):
        resolve_config("alanine-dipeptide", options={"objective": "half"}, assignments=["half.factor=-1"])
    config = resolve_config("alanine-dipeptide", options={"objective": "half", "steps": 3, "batch_size": 16},
                            assignments=["half.factor=0.25", "model.layers=2", "model.hidden=[16]",
                                         "final_samples=64", "eval_batch_size=32"])
    assert config["anneal"]["start"] == 0.0  # the default preset anneals rkl only
    summary = train(config, tmp_path)
    assert summary["objective"] == "half" and summary["stopped"] == "done"
    assert read_toml(tmp_path / "config.toml")["half"] == {"factor": 0.25}
    run = load_run(tmp_path)
    assert run.settings.sections["half"].factor == 0.25 and isinstance(run.model, torch.nn.Module)
