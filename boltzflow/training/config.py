"""The configuration of a training run: defaults, presets, TOML files and command-line overrides.

Every setting has its type, default and allowed values in ``settings`` (one dataclass per
table); this module layers where values come from (later wins): the defaults, the preset,
the ``--config`` TOML file, then command-line options and ``--set section.key=value``. The
run directory keeps the fully resolved configuration (``config.toml``), so a run can be
repeated or resumed from it alone.

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
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..errors import BoltzflowError
from ..io import read_toml
from ..io.toml import tomllib
from .settings import Settings, defaults, merge_settings

# settings added after runs were first written, with the value such older runs used
LEGACY: dict[str, Any] = {"model": {"base": "uniform", "rotor_sectors": False},
                          "rkl": {"forward_weight": 0.0, "forward_samples": 32, "data_weight": 0.0, "data_first": 0.0},
                          "anneal": {"refit": "ml"}, "threads": 0}

# settings of one invocation, not of the run: a resumed run does not inherit them
PER_INVOCATION = ("time_limit", "threads")
# settings that may change when a run is resumed (as long as processes × shards stays the same)
RESUMABLE_CHANGES = ("steps", "time_limit", "shards", "threads")
# preset sections that apply to some objectives only; with another objective they are left out
SCOPED: dict[str, tuple[str, ...]] = {"anneal": ("rkl",)}

DEFAULTS: dict[str, Any] = defaults()  # every setting's default (training.settings), as config.toml holds it

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
        config = defaults()  # not DEFAULTS: the objectives registered now
        merge_settings(config, copy.deepcopy(preset_settings), f"preset {preset}")
        for source, settings in layers:
            merge_settings(config, copy.deepcopy(settings), source)
        return config

    settings = PRESETS[preset]
    config = layered({k: v for k, v in settings.items() if k not in SCOPED})
    if any(k in SCOPED and config["objective"] in SCOPED[k] for k in settings):
        config = layered({k: v for k, v in settings.items() if k not in SCOPED or config["objective"] in SCOPED[k]})
    if system is not None:
        config["system"] = system
    Settings.from_config(config)  # checks every value
    return config
