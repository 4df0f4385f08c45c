"""The configuration of a training run: defaults, presets, TOML files and command-line overrides.

Every setting has a default here, in one place; a value comes from (later wins) the
defaults, the preset, the ``--config`` TOML file, then command-line options and
``--set section.key=value``. The run directory keeps the fully resolved configuration
(``config.toml``), so a run can be repeated or resumed from it alone.

``batch_size`` is a step's whole batch. Under ``torchrun`` or ``srun`` each of the P
processes draws batch_size / P of it; ``shards`` splits a process's part into that many
pieces, computed one after another, each with its own random stream, their gradients summed
(gradient accumulation: a large batch on a small GPU). P processes × S shards train the same
model as 1 process × P·S shards, up to float rounding; ``shards`` may change on ``--resume``
as long as processes × shards stays the same.

The ``default`` preset fits a laptop: ``boltzflow train alanine-dipeptide`` trains and
reports in 9.5 minutes on two idle CPU cores (11–12 minutes on one). The ``literature`` preset uses the model and budget of the
published alanine-dipeptide runs (12 coupling layers, 8 bins, 256 hidden units, batch 1024,
Adam 5e-4 with cosine decay; FAB: 2.1e8 target evaluations).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..errors import BoltzflowError
from ..io import read_toml
from ..io.toml import tomllib
from .annealing import REFITS
from .trainer import parse_duration

OBJECTIVES = ("rkl", "ml", "snf", "fab")
KERNELS = ("metropolis", "mala", "hmc")
BASES = ("thermal", "uniform")
# settings added after runs were first written, with the value such older runs used
LEGACY: dict[str, Any] = {"model": {"base": "uniform"}, "rkl": {"forward_weight": 0.0, "forward_samples": 32},
                          "anneal": {"refit": "ml"}, "threads": 0}

# settings of one invocation, not of the run: a resumed run does not inherit them
PER_INVOCATION = ("time_limit", "threads")
# preset sections that apply to some objectives only; with another objective they are left out
SCOPED: dict[str, tuple[str, ...]] = {"anneal": ("rkl",)}

DEFAULTS: dict[str, Any] = {
    "system": "",
    "objective": "rkl",           # rkl | ml | snf | fab
    "steps": 4000,
    "batch_size": 256,            # samples per step, over all processes and shards
    "shards": 1,                  # pieces of a process's batch, computed one after another
    "lr": 5e-4,
    "lr_min": 0.0,                # the cosine schedule ends here
    "warmup": 100,                # steps of linear learning-rate warm-up
    "clip_grad_norm": 100.0,
    "seed": 0,
    "device": "cpu",              # cpu | cuda | cuda:N
    "threads": 0,                 # CPU threads (torch, OpenMM); 0: automatic (boltzflow.threads)
    "dtype": "float32",           # float32 | float64
    "temperature": 0.0,           # K; 0: the system's
    "time_limit": "",             # e.g. "3h50m"; "": none
    "data": "",                   # ml: conformations (boltzflow md HDF5 or any trajectory mdtraj reads)
    "eval_batch_size": 2048,      # held-out samples per logged step
    "final_samples": 16384,       # samples for the ESS printed at the end
    "log_every": 25,
    "checkpoint_every": 250,
    # base "thermal": bonds and angles scaled by their force-field thermal widths √(kT/k) and
    # drawn from a truncated standard normal, so the untrained flow already has them at their
    # Boltzmann spread; "uniform": fixed scales (0.004 nm, 0.1 rad) and a uniform base
    "model": {"layers": 8, "bins": 8, "hidden": [128, 128], "circular_shift": True, "base": "thermal"},
    "energy": {"backend": "torch", "compile": False, "mirror": "penalize", "mirror_penalty": 100.0,
               "energy_high": 1000.0},
    # λ of rkl's mode-covering KL(p ‖ q) term and the points it is estimated on (objectives.reverse_kl)
    "rkl": {"forward_weight": 0.0, "forward_samples": 32},
    "snf": {"kernel": "mala", "layers": 2, "steps_per_layer": 1, "step_size": 0.001},
    "fab": {"n_intermediate": 8, "spacing": "linear", "n_leapfrog": 4, "step_size": 0.01,
            "buffer_batches": 64, "updates_per_ais": 4},
    # start 0: off; refit "ml" (TA-BG: reweight, resample, maximum likelihood) or "objective"
    "anneal": {"start": 0.0, "stages": 5, "first_fraction": 0.5, "samples": 65536, "refit": "ml"},
}

# reverse KL from 600 K down to the target temperature in four steps, with the mode-covering
# term: both keep minor basins (alanine dipeptide's φ > 0) that reverse KL alone misses or
# collapses into (benchmarks/RESULTS.md)
ANNEALED_RKL: dict[str, Any] = {"rkl": {"forward_weight": 1.0},
                                "anneal": {"start": 600.0, "stages": 4, "refit": "objective"}}
PRESETS: dict[str, dict[str, Any]] = {
    # ten minutes of two CPU cores: 6,000 steps of 256 (1.5e6 target evaluations)
    "default": {**ANNEALED_RKL, "steps": 6000},
    # one hour of one CPU core: twice the batch, 3 times the steps of the default (9.2e6 evaluations)
    "cpu-hour": {**ANNEALED_RKL, "steps": 18_000, "batch_size": 512, "warmup": 200},
    # the published model and budget, on a GPU with the compiled torch force field
    "literature": {"steps": 250_000, "batch_size": 1024, "lr": 5e-4, "warmup": 1000, "device": "cuda",
                   "energy": {"compile": True},
                   "model": {"layers": 12, "bins": 8, "hidden": [256, 256]},
                   "fab": {"buffer_batches": 100, "updates_per_ais": 8},
                   "anneal": {"samples": 200_000}},
}


def _merge(base: dict, update: dict, source: str, prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place, checking keys and types against ``base``."""
    for key, value in update.items():
        name = prefix + key
        if key not in base:
            known = ", ".join(prefix + k for k in base)
            raise BoltzflowError(f"{source}: unknown setting '{name}'; known: {known}")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise BoltzflowError(f"{source}: '{name}' must be a table of settings, got {value!r}")
            _merge(default, value, source, name + ".")
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


def parse_assignment(text: str) -> dict:
    """``"fab.n_intermediate=8"`` → ``{"fab": {"n_intermediate": 8}}`` (value read as TOML, else a string)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BoltzflowError(f"--set {text!r}: write KEY=VALUE, e.g. --set fab.n_intermediate=8")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def with_legacy(saved: dict) -> dict:
    """A run's saved configuration with the ``LEGACY`` values filled in where it predates a setting."""
    def fill(table: dict, legacy: dict) -> dict:
        out = dict(table)
        for key, value in legacy.items():
            if isinstance(value, dict):
                out[key] = fill(out.get(key, {}), value) if isinstance(out.get(key, {}), dict) else out[key]
            else:
                out.setdefault(key, value)
        return out
    return fill(saved, LEGACY)


def resolve_config(system: Optional[str] = None, preset: str = "default",
                   config_file: Union[str, Path, None] = None, options: Optional[dict] = None,
                   assignments: Sequence[str] = (), run_dir: Union[str, Path, None] = None) -> dict:
    """The full configuration: defaults < preset < a run's own ``config.toml`` < ``config_file``
    < ``options`` < ``assignments``.

    ``run_dir``: a run directory being resumed; its config.toml (older runs' missing settings
    filled as they were, ``LEGACY``) stands in for everything not given again, except the
    ``PER_INVOCATION`` settings (a time limit, threads). ``options``
    are settings given as command-line options (``None`` values are ignored); ``assignments``
    are ``--set KEY=VALUE`` strings. Raises ``BoltzflowError`` for unknown keys, wrong types
    and invalid values.
    """
    if preset not in PRESETS:
        raise BoltzflowError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    layers = []
    if run_dir is not None:
        saved = Path(run_dir) / "config.toml"
        settings = {k: v for k, v in with_legacy(read_toml(saved)).items() if k not in PER_INVOCATION}
        layers.append((str(saved), settings))
    if config_file is not None:
        layers.append((str(config_file), read_toml(config_file)))
    layers.append(("command line", {k: v for k, v in (options or {}).items() if v is not None}))
    layers += [(f"--set {text}", parse_assignment(text)) for text in assignments]

    def layered(preset_settings: dict) -> dict:
        config = copy.deepcopy(DEFAULTS)
        _merge(config, copy.deepcopy(preset_settings), f"preset {preset}")
        for source, settings in layers:
            _merge(config, copy.deepcopy(settings), source)
        return config

    settings = PRESETS[preset]
    config = layered({k: v for k, v in settings.items() if k not in SCOPED})
    if any(k in SCOPED and config["objective"] in SCOPED[k] for k in settings):
        config = layered({k: v for k, v in settings.items() if k not in SCOPED or config["objective"] in SCOPED[k]})
    if system is not None:
        config["system"] = system
    _validate(config)
    return config


def _validate(config: dict) -> None:
    def bad(key: str, expected: str) -> BoltzflowError:
        value = config
        for part in key.split("."):
            value = value[part]
        return BoltzflowError(f"setting '{key}' = {value!r}: expected {expected}")

    if not config["system"]:
        raise BoltzflowError("no system given: name one, e.g. boltzflow train alanine-dipeptide")
    if config["time_limit"]:
        parse_duration(config["time_limit"])
    if config["objective"] not in OBJECTIVES:
        raise bad("objective", " | ".join(OBJECTIVES))
    if config["objective"] == "ml" and not config["data"]:
        raise BoltzflowError("objective 'ml' needs data: --set data=md.h5 (from boltzflow md, or any "
                             "trajectory mdtraj reads)")
    if config["threads"] < 0:
        raise bad("threads", "a number of CPU threads (0: automatic)")
    for key in ("steps", "batch_size", "shards", "eval_batch_size", "final_samples", "log_every", "checkpoint_every"):
        if config[key] < 1:
            raise bad(key, "a positive integer")
    if config["batch_size"] % config["shards"]:
        raise bad("batch_size", f"a multiple of shards = {config['shards']}")
    for key in ("lr", "lr_min", "clip_grad_norm"):
        if not math.isfinite(config[key]):
            raise bad(key, "a finite number")
    if not config["lr"] > 0:
        raise bad("lr", "a positive learning rate")
    if not config["clip_grad_norm"] > 0:
        raise bad("clip_grad_norm", "a positive gradient norm")
    if config["model"]["base"] not in BASES:
        raise bad("model.base", " | ".join(BASES))
    if config["dtype"] not in ("float32", "float64"):
        raise bad("dtype", "float32 | float64")
    if config["temperature"] < 0:
        raise bad("temperature", "a temperature in K (0: the system's)")
    if not config["rkl"]["forward_weight"] >= 0:
        raise bad("rkl.forward_weight", "a weight >= 0")
    if config["rkl"]["forward_samples"] < 1:
        raise bad("rkl.forward_samples", "a positive integer")
    if config["snf"]["kernel"] not in KERNELS:
        raise bad("snf.kernel", " | ".join(KERNELS))
    if config["energy"]["backend"] not in ("torch", "openmm"):
        raise bad("energy.backend", "torch | openmm")
    if config["energy"]["mirror"] not in ("penalize", "exclude"):
        raise bad("energy.mirror", "penalize | exclude")
    anneal = config["anneal"]
    if anneal["start"] and config["objective"] not in ("rkl", "fab"):
        raise BoltzflowError("temperature annealing (anneal.start) works with the rkl and fab objectives")
    if anneal["refit"] not in REFITS:
        raise bad("anneal.refit", " | ".join(REFITS))
    if anneal["start"] and anneal["stages"] < 2:
        raise bad("anneal.stages", "at least 2 temperatures")
