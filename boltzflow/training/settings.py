"""Typed settings of a training run, one dataclass per table of config.toml, and the
registries the settings name: objectives (``OBJECTIVES``) and base distributions (``BASES``).

``Settings.from_config(config)`` reads a configuration (a dict with config.toml's keys, as
``config.resolve_config`` returns it; keys left out take their defaults) and checks every
key, type and value, with one-line errors that name the setting; ``as_config()`` gives the
dict back, as config.toml holds it. The objectives' tables ([rkl], [snf], [fab]) are the
objectives' own dataclasses (``Objective.settings``): adding an objective is one module with
its loss and ``Objective`` entry, one line in ``OBJECTIVES``, and its test.

Example:
    >>> settings = Settings.from_config({"system": "alanine-dipeptide", "fab": {"n_intermediate": 4}})
    >>> settings.sections["fab"].n_intermediate, settings.model.layers
    (4, 8)
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import BoltzflowError, invalid_setting
from .annealing import REFITS
from .fab import FLOW_AIS_BOOTSTRAP
from .objectives import MAXIMUM_LIKELIHOOD, REVERSE_KL, Objective
from .snf import STOCHASTIC_FLOW
from .trainer import parse_duration

# the objectives by the names of the ``objective`` setting
OBJECTIVES: dict[str, Objective] = {
    o.name: o for o in (REVERSE_KL, MAXIMUM_LIKELIHOOD, STOCHASTIC_FLOW, FLOW_AIS_BOOTSTRAP)}


@dataclass(frozen=True)
class BaseKind:
    """What ``model.base`` sets up: the internal coordinates' bond and angle ``scales``
    (``InternalCoordinates``) and the family of the base's interval marginals (``ProductBase``)."""

    scales: str
    interval: str


# "thermal": bonds and angles scaled by their force-field thermal widths √(kT/k) and drawn from
# a truncated standard normal, so the untrained flow already has them at their Boltzmann
# spread; "uniform": fixed scales (0.004 nm, 0.1 rad) and a uniform base
BASES: dict[str, BaseKind] = {"thermal": BaseKind("force-field", "normal"), "uniform": BaseKind("fixed", "uniform")}


@dataclass
class ModelSettings:
    """``[model]``: the spline flow (coupling ``layers``, spline ``bins``, ``hidden`` widths of
    the conditioners, shifts of the circular coordinates), its ``base`` (``BASES``) and
    ``rotor_sectors``: methyl / NH₃⁺ rotors confined to one of their three equivalent sectors
    (``boltzflow.coordinates.rotors``; log Z of the full space adds log 3 per rotor). Off by
    default: on alanine dipeptide it raised the ESS but lost φ > 0 (benchmarks/RESULTS.md)."""

    layers: int = 8
    bins: int = 8
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    circular_shift: bool = True
    base: str = "thermal"
    rotor_sectors: bool = False

    def check(self) -> None:
        for key in ("layers", "bins"):
            if getattr(self, key) < 1:
                raise invalid_setting(f"model.{key}", getattr(self, key), "a positive integer")
        if not self.hidden or min(self.hidden) < 1:
            raise invalid_setting("model.hidden", self.hidden, "a list of positive layer widths, e.g. [128, 128]")
        if self.base not in BASES:
            raise invalid_setting("model.base", self.base, " | ".join(BASES))


@dataclass
class EnergySettings:
    """``[energy]``: the ``backend`` (torch force field or OpenMM), ``compile`` (torch.compile),
    ``workers`` (OpenMM backend: worker processes, one Context each; 0: one Context in the
    training process), how mirror images are handled (``mirror``, ``mirror_penalty`` in kT) and the energy in kT
    above which energies are softened (``energy_high``; 0: never; ``targets.BoltzmannTarget``)."""

    backend: str = "torch"
    compile: bool = False
    workers: int = 0
    mirror: str = "penalize"
    mirror_penalty: float = 100.0
    energy_high: float = 1000.0

    def check(self) -> None:
        if self.backend not in ("torch", "openmm"):
            raise invalid_setting("energy.backend", self.backend, "torch | openmm")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise invalid_setting("energy.workers", self.workers, "a number of OpenMM worker processes (0: none)")
        if self.mirror not in ("penalize", "exclude"):
            raise invalid_setting("energy.mirror", self.mirror, "penalize | exclude")


@dataclass
class AnnealSettings:
    """``[anneal]``: temperature annealing from ``start`` K (0: off) down to the target in
    ``stages`` temperatures, ``first_fraction`` of the steps at the highest, ``samples``
    drawn per later stage, ``refit`` "ml" (TA-BG: reweight, resample, maximum likelihood) or
    "objective" (``annealing.TemperatureAnnealing``)."""

    start: float = 0.0
    stages: int = 5
    first_fraction: float = 0.5
    samples: int = 65536
    refit: str = "ml"

    def check(self) -> None:
        if self.refit not in REFITS:
            raise invalid_setting("anneal.refit", self.refit, " | ".join(REFITS))
        if self.start and self.stages < 2:
            raise invalid_setting("anneal.stages", self.stages, "at least 2 temperatures")
        if not 0 < self.first_fraction < 1:
            raise invalid_setting("anneal.first_fraction", self.first_fraction, "a fraction in (0, 1)")
        if self.samples < 1:
            raise invalid_setting("anneal.samples", self.samples, "a positive integer")


def _objective_sections() -> dict[str, Any]:
    return {name: objective.settings() for name, objective in OBJECTIVES.items() if objective.settings}


@dataclass
class Settings:
    """Everything a training run is built from (config.toml's top level; units in the comments).

    ``batch_size`` is a step's whole batch over all processes and ``shards`` (pieces of a
    process's batch computed one after another); ``sections`` holds the objectives' tables by
    name (``sections["fab"]`` is a ``FABSettings``)."""

    system: str = ""
    objective: str = "rkl"           # OBJECTIVES
    steps: int = 4000
    batch_size: int = 256            # samples per step, over all processes and shards
    shards: int = 1
    lr: float = 5e-4
    lr_min: float = 0.0              # the cosine schedule ends here
    warmup: int = 100                # steps of linear learning-rate warm-up
    clip_grad_norm: float = 100.0
    seed: int = 0
    device: str = "cpu"              # cpu | cuda | cuda:N
    threads: int = 0                 # CPU threads (torch, OpenMM); 0: automatic (boltzflow.threads)
    dtype: str = "float32"           # float32 | float64
    temperature: float = 0.0         # K; 0: the system's
    time_limit: str = ""             # e.g. "3h50m"; "": none
    data: str = ""                   # conformations (boltzflow md HDF5 or any trajectory mdtraj reads)
    eval_batch_size: int = 2048      # held-out samples per logged step
    final_samples: int = 16384       # samples for the ESS printed at the end
    log_every: int = 25
    checkpoint_every: int = 250
    model: ModelSettings = field(default_factory=ModelSettings)
    energy: EnergySettings = field(default_factory=EnergySettings)
    sections: dict[str, Any] = field(default_factory=_objective_sections)
    anneal: AnnealSettings = field(default_factory=AnnealSettings)

    @property
    def kind(self) -> Objective:
        """The registry entry of the configured objective."""
        return OBJECTIVES[self.objective]

    @property
    def base_kind(self) -> BaseKind:
        return BASES[self.model.base]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "configuration") -> "Settings":
        """The checked settings of ``config`` (config.toml's keys; missing ones take their defaults)."""
        table = defaults()
        merge_settings(table, copy.deepcopy(dict(config)), source)
        tables = {"model": ModelSettings, "energy": EnergySettings, "anneal": AnnealSettings}
        top = {key: value for key, value in table.items() if key not in tables and key not in OBJECTIVES}
        settings = cls(**top, **{key: kind(**table[key]) for key, kind in tables.items()},
                       sections={name: OBJECTIVES[name].settings(**table[name]) for name in _objective_sections()})
        settings.check()
        return settings

    def as_config(self) -> dict[str, Any]:
        """The settings as config.toml holds them (plain data, in config.toml's order)."""
        data = dataclasses.asdict(self)
        sections, anneal = data.pop("sections"), data.pop("anneal")
        return {**data, **sections, "anneal": anneal}

    def check(self) -> None:
        """Raise ``BoltzflowError`` naming the first setting whose value is not allowed."""
        if not self.system:
            raise BoltzflowError("no system given: name one, e.g. boltzflow train alanine-dipeptide")
        if self.time_limit and not parse_duration(self.time_limit) > 0:
            raise invalid_setting("time_limit", self.time_limit, "a positive duration, e.g. 3h50m")
        if self.objective not in OBJECTIVES:
            raise invalid_setting("objective", self.objective, " | ".join(OBJECTIVES))
        if self.kind.data == "required" and not self.data:
            raise BoltzflowError(f"objective '{self.objective}' needs data: set data to a file of conformations "
                                 "(from boltzflow md, or any trajectory mdtraj reads), e.g. data=\"md.h5\"")
        if self.threads < 0:
            raise invalid_setting("threads", self.threads, "a number of CPU threads (0: automatic)")
        for key in ("steps", "batch_size", "shards", "eval_batch_size", "final_samples", "log_every",
                    "checkpoint_every"):
            if getattr(self, key) < 1:
                raise invalid_setting(key, getattr(self, key), "a positive integer")
        if self.batch_size % self.shards:
            raise invalid_setting("batch_size", self.batch_size, f"a multiple of shards = {self.shards}")
        for key in ("lr", "lr_min", "clip_grad_norm"):
            if not math.isfinite(getattr(self, key)):
                raise invalid_setting(key, getattr(self, key), "a finite number")
        if not self.lr > 0:
            raise invalid_setting("lr", self.lr, "a positive learning rate")
        if not self.clip_grad_norm > 0:
            raise invalid_setting("clip_grad_norm", self.clip_grad_norm, "a positive gradient norm")
        if self.dtype not in ("float32", "float64"):
            raise invalid_setting("dtype", self.dtype, "float32 | float64")
        if self.temperature < 0:
            raise invalid_setting("temperature", self.temperature, "a temperature in K (0: the system's)")
        for section in (self.model, self.energy, *self.sections.values(), self.anneal):
            section.check()
        if self.anneal.start and not self.kind.anneals:
            annealing = " and ".join(name for name, objective in OBJECTIVES.items() if objective.anneals)
            raise BoltzflowError(f"temperature annealing (anneal.start) works with the {annealing} objectives")


def defaults() -> dict[str, Any]:
    """The default settings as config.toml would hold them."""
    return Settings().as_config()


def merge_settings(base: dict, update: Mapping, source: str, prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place, checking its keys and types against ``base``'s
    (an int is taken for a float); ``source`` names where ``update`` came from in errors."""
    for key, value in update.items():
        name = prefix + key
        if key not in base:
            known = ", ".join(prefix + k for k in base)
            raise BoltzflowError(f"{source}: unknown setting '{name}'; known: {known}")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise BoltzflowError(f"{source}: '{name}' must be a table of settings, got {value!r}")
            merge_settings(default, value, source, name + ".")
            continue
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(default, list) and isinstance(value, list):
            ok = all(isinstance(v, type(default[0])) and not isinstance(v, bool) for v in value) if default else True
        else:
            ok = type(value) is type(default)
        if not ok:
            raise BoltzflowError(f"{source}: '{name}' must be {type(default).__name__} like {default!r}, got {value!r}")
        base[key] = value
