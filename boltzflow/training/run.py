"""A training run of a molecular Boltzmann generator, from a resolved configuration to a run directory.

``build_run(settings)`` assembles the pieces the typed settings (``settings.Settings``) name:
the system, its internal coordinates, the flow over their domains, the Boltzmann target and,
for ``snf``, the stochastic flow. ``train(config, out)`` trains it with the configured
objective (``settings.OBJECTIVES``) and writes the run directory::

    config.toml   metrics.jsonl   checkpoints/last.pt   model.pt   summary.json

Under ``torchrun`` or ``srun`` (several processes) ``train`` joins the process group
(``distributed``); every process draws its own shards of each batch and evaluates their
energies, and rank 0 writes the run directory. ``batch_size`` is the batch of a step over
all processes and ``shards`` (module ``trainer``). The objectives' state is per shard: each
shard of ``fab`` has its own AIS step sizes and replay buffer (``fab.buffer_batches`` of its
own batches), each of ``snf`` its own MCMC kernels (shard 0's are the model's), and each
temperature-annealing stage draws ``anneal.samples`` / (processes × shards) points per shard.

``load_run(out)`` rebuilds the trained model from a run directory, for sampling.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from ..analysis.weights import kish_ess, log_normalizer, normalized_log_weights
from ..errors import EX_TEMPFAIL, BoltzflowError
from ..flows import Flow, ProductBase, spline_flow
from ..io import atomic_path, model_file, read_toml, write_toml
from ..io.checkpoints import LAST_CHECKPOINT, read_tensors
from ..io.lock import LOCK_NAME, directory_lock
from ..reference.trajectory import load_positions
from ..systems import System, load_system
from . import distributed
from .annealing import TemperatureAnnealing, temperature_ladder
from .config import RESUMABLE_CHANGES, resolve_config, with_legacy
from .correction import AISCorrection
from .settings import Settings
from .snf import StochasticFlow
from .targets import BoltzmannTarget
from .trainer import Schedule, Trainer, load_objective_state, objective_state, parse_duration

SWEEP_FILE = "sweep.json"  # put into a run directory by boltzflow sweep before the run starts
EARLY_STOP_EXIT_CODE = EX_TEMPFAIL  # stopped with a checkpoint; run again with --resume


def device_of(name: str) -> torch.device:
    """The torch device named ``name``; a one-line error when it is unknown or not available here."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BoltzflowError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BoltzflowError(f"device {name!r} requested but CUDA is not available here; use device 'cpu'")
    return device


@dataclass
class Run:
    """The model of a run and everything needed to sample it (shapes: z [n, dim], xyz [n, atoms, 3] nm).

    ``model`` is what is trained and saved: the ``flow``, or the ``StochasticFlow`` holding it.
    """

    settings: Settings
    system: System
    flow: Flow
    target: BoltzmannTarget
    snf: Optional[StochasticFlow] = None

    @property
    def config(self) -> dict:
        """The settings as the run's config.toml holds them."""
        return self.settings.as_config()

    @property
    def model(self) -> nn.Module:
        return self.snf if self.snf is not None else self.flow

    @property
    def coordinates(self):
        return self.target.coordinates

    def draw(self, n: int, correction: Optional["AISCorrection"] = None) -> dict[str, Tensor]:
        """``n`` samples without gradients: z, xyz, u (kT at the target temperature), log|det J|,
        right_handed, log_p (target, unnormalised), log_w (importance log-weights) and,
        for plain flows, log_q (for SNFs log_q is log p − log w, the path's effective density).

        ``correction``: take the flow samples through annealed importance sampling to the
        target (``correction.AISCorrection``); log_w is then the AIS weight and log_w_flow
        the flow-only weight of each chain's starting sample."""
        if correction is not None:
            return correction.draw(self, n)
        with torch.no_grad():
            if self.snf is None:
                z, log_q = self.flow.sample_and_log_prob(n)
                out = self.target.evaluate(z)
                log_w = out["log_p"] - log_q
            else:
                z, log_w, _ = self.snf.sample_with_log_weights(n, self.target, differentiable=False)
                out = self.target.evaluate(z)
                log_q = out["log_p"] - log_w
        return {"z": z, **out, "log_q": log_q, "log_w": log_w}

    def draw_batches(self, n: int, batch_size: int) -> dict[str, Tensor]:
        """``draw(n)`` in batches of at most ``batch_size`` (bounded memory)."""
        parts = [self.draw(min(batch_size, n - start)) for start in range(0, n, batch_size)]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    def report(self, n: int) -> dict[str, float]:
        """ESS, log Z, mean energy, mirror-image fraction and state populations from ``n`` samples.

        Populations ``pop_<state>`` are importance-reweighted; ``raw_<state>`` are the flow's own.
        The target evaluations this costs are not counted as training evaluations."""
        evaluations = self.target.evaluations
        samples = self.draw_batches(n, self.settings.eval_batch_size)
        self.target.evaluations = evaluations
        log_w = samples["log_w"].double()
        finite_u = torch.isfinite(samples["u"])
        result = {"ess": kish_ess(log_w).item(), "log_z": log_normalizer(log_w).item(),
                  "energy": samples["u"][finite_u].mean().item() if finite_u.any() else math.inf,
                  "mirror": 1.0 - samples["right_handed"].double().mean().item()}
        weights = normalized_log_weights(log_w).exp()
        cvs = self.system.collective_variables(samples["xyz"])
        for name, state in self.system.states.items():
            inside = state.contains(cvs)
            result[f"pop_{name}"] = weights[inside].sum().item()
            result[f"raw_{name}"] = inside.double().mean().item()
        return result


def build_run(settings: Settings) -> Run:
    """The system, coordinates, flow, target (and SNF) of the settings, on their device."""
    device, dtype = device_of(settings.device), getattr(torch, settings.dtype)
    system = load_system(settings.system)
    options, model, base = settings.energy, settings.model, settings.base_kind
    if options.backend == "openmm":
        energy = system.energy("openmm", workers=options.workers)
    else:
        energy = system.energy("torch", compile=options.compile).to(device, dtype)
    coordinates = system.internal_coordinates(scales=base.scales, rotor_sectors=model.rotor_sectors).to(device, dtype)
    target = BoltzmannTarget(energy, coordinates, system.chiral_centers, mirror=options.mirror,
                             mirror_penalty=options.mirror_penalty, energy_high=options.energy_high or None,
                             temperature=settings.temperature or system.temperature)
    torch.manual_seed(settings.seed)
    flow = spline_flow(coordinates.domains, layers=model.layers, bins=model.bins, hidden=tuple(model.hidden),
                       circular_shift=model.circular_shift,
                       base=ProductBase(coordinates.domains, interval=base.interval), seed=settings.seed)
    flow = flow.to(device, dtype)
    return Run(settings, system, flow, target, _wrapped(settings, flow))


def _wrapped(settings: Settings, flow: Flow) -> Optional[nn.Module]:
    """The model the objective trains around ``flow`` (its own MCMC kernels), None: the flow itself."""
    wrap = settings.kind.wrap
    return None if wrap is None else wrap(settings.sections.get(settings.objective), flow)


def _load_data(run: Run) -> Tensor:
    """The ``data`` file's conformations as internal coordinates z [frames, dim] on the run's device."""
    xyz = load_positions(run.settings.data, run.system)
    param = next(run.flow.parameters())
    with torch.no_grad():
        z, _ = run.coordinates.inverse(torch.as_tensor(xyz, dtype=param.dtype, device=param.device))
    return z


class _Objective:
    """One shard of the configured objective as a trainer loss: ``loss, stats = objective(step)``
    on ``batch`` samples (``samples`` per annealing stage) of the shard's ``model`` (the flow,
    or the stochastic flow around it), from ``data`` (z [frames, dim]) for objectives that
    train on conformations; counts the target evaluations it makes and checkpoints its
    objective's state (kernel step sizes, replay buffer, annealing data)."""

    def __init__(self, run: Run, batch: int, samples: int, model: nn.Module, data: Optional[Tensor]):
        settings = run.settings
        self.run, self.evaluations = run, 0
        inner = settings.kind.loss(run, model, batch, data)
        anneal = settings.anneal
        if anneal.start:
            low = settings.temperature or run.system.temperature  # not target.temperature: shards anneal it
            ladder = temperature_ladder(anneal.start, low, anneal.stages)
            inner = TemperatureAnnealing(inner, run.flow, run.target, run.target.set_temperature, ladder,
                                         settings.steps, batch, samples, anneal.first_fraction, anneal.refit)
        self.inner = inner

    def __call__(self, step: int) -> tuple[Tensor, dict]:
        before = self.run.target.evaluations
        loss, stats = self.inner(step)
        self.evaluations += self.run.target.evaluations - before
        return loss, {**stats, "evaluations": self.evaluations}

    def state_dict(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations, "inner": objective_state(self.inner)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluations = int(state["evaluations"])
        inner = state.get("inner", {})
        if "kernels" in state:  # checkpoints written before 2026-12 kept snf's kernels out of "inner"
            inner = {**inner, "kernels": state["kernels"]}
        load_objective_state(self.inner, inner)


def _shard_sizes(settings: Settings, processes: int) -> tuple[int, int]:
    """A shard's batch and annealing sample count with ``processes`` × ``settings.shards`` shards."""
    shards = processes * settings.shards
    if settings.batch_size % shards:
        raise BoltzflowError(f"batch_size {settings.batch_size} is not divisible by {processes} process(es) × "
                             f"{settings.shards} shard(s); choose a multiple of {shards}")
    return settings.batch_size // shards, -(-settings.anneal.samples // shards)


def _check_trained(model: nn.Module, result: dict) -> None:
    """A one-line error when training broke the model (a parameter no longer finite) or most of
    its steps were skipped (non-finite loss or gradient): such a run is not 'done'."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise BoltzflowError("training failed: the model's parameters are no longer finite; "
                             "lower the learning rate (--lr) and start a new run")
    if result["step"] and result["skipped"] > result["step"] / 2:
        raise BoltzflowError(f"training failed: {result['skipped']} of {result['step']} steps were skipped "
                             "(non-finite loss or gradient); lower the learning rate (--lr) or check the energy")


def check_run_dir(out: Union[str, Path], resume: bool) -> None:
    """A one-line error unless ``out`` may become (or continue as) a run directory: absent,
    empty, or a boltzflow run (its config.toml names a system); one with a checkpoint only
    with ``resume``. A folder of the user's is never written into."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BoltzflowError(f"{out} is a file; name a folder for the run")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        try:
            is_run = bool(read_toml(out / "config.toml").get("system")) or (out / SWEEP_FILE).is_file()
        except (BoltzflowError, OSError, UnicodeDecodeError):
            is_run = (out / SWEEP_FILE).is_file()
        if not is_run:
            raise BoltzflowError(f"{out} is not empty and is not a boltzflow run directory (no config.toml of a "
                                 "run); choose another --out")
    if not resume and (out / LAST_CHECKPOINT).is_file():
        raise BoltzflowError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")


def _check_resume(out: Path, config: dict, resume: bool) -> bool:
    """Check ``out`` and that ``config`` may continue its run; returns whether to resume from a
    checkpoint. Writes nothing: config.toml is written once the checkpoint has been restored."""
    check_run_dir(out, resume)
    checkpoint = out / LAST_CHECKPOINT
    resuming = resume and checkpoint.is_file()
    if resuming:
        saved = with_legacy(read_toml(out / "config.toml"))
        if saved != config:
            changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
            if set(changed) - set(RESUMABLE_CHANGES):
                raise BoltzflowError(f"cannot resume {out}: its config.toml differs in {', '.join(changed)}; "
                                     f"only {', '.join(RESUMABLE_CHANGES)} may change on --resume")
    return resuming


def train(config: Mapping[str, Any], out: Union[str, Path], resume: bool = False,
          on_step: Optional[Callable[[int, dict], None]] = None,
          final: Optional[Callable[[Run], dict]] = None) -> dict:
    """Train the configured model into run directory ``out``; returns the summary (also
    written to ``out/summary.json``).

    ``config``: a configuration with config.toml's keys (``resolve_config``), read into ``Settings``.
    ``resume``: continue from ``out/checkpoints/last.pt`` when it exists (else start).
    ``final(run)``: the numbers of the trained model that go into the summary, from its
    ``final_samples`` fresh samples; default ``run.report`` (ESS, log Z, populations). The
    summary's ``wall_time`` is the training's (s, over every invocation), ``final_seconds``
    that of this final evaluation (0 when stopped early). The summary's ``stopped`` is
    ``done``, ``time-limit`` or ``signal``. Launched as several processes (torchrun, srun),
    each trains its shards, rank 0 writes ``out`` and every process returns rank 0's summary."""
    out = Path(out)
    settings = Settings.from_config(config)
    with distributed.process_group(settings.device) as device, ExitStack() as held:
        run = build_run(dataclasses.replace(settings, device=str(device)))
        settings = dataclasses.replace(settings, temperature=run.target.temperature)
        batch, samples = _shard_sizes(settings, distributed.world_size())
        check_run_dir(out, resume)
        if distributed.rank() == 0:  # one writer per run directory, until this returns
            held.enter_context(directory_lock(out))
        config = settings.as_config()  # what config.toml and the checkpoints hold
        resuming = _check_resume(out, config, resume)
        schedule = Schedule(steps=settings.steps, lr=settings.lr, lr_min=settings.lr_min, warmup=settings.warmup,
                            clip_grad_norm=settings.clip_grad_norm, checkpoint_every=settings.checkpoint_every,
                            log_every=settings.log_every,
                            time_limit=parse_duration(settings.time_limit) if settings.time_limit else None)

        def evaluate() -> dict:
            report = run.report(settings.eval_batch_size)
            return {"eval_ess": report.pop("ess"), **{k: v for k, v in report.items() if not k.startswith("pop_")}}

        data = _load_data(run) if settings.data and settings.kind.data != "no" else None
        # shard 0 trains the model itself; other shards wrap the shared flow in models of their own (own kernels)
        models = [run.model] + [run.flow if run.snf is None else _wrapped(settings, run.flow)
                                for _ in range(settings.shards - 1)]
        objectives = [_Objective(run, batch, samples, model, data) for model in models]
        trainer = Trainer(run.model, objectives, schedule, out, config, evaluate, seed=settings.seed)
        if resuming:  # a checkpoint that does not fit fails here, before config.toml is rewritten
            trainer.restore()
        distributed.barrier()  # every process has read out/ before rank 0 writes
        if distributed.rank() == 0:
            write_toml(out / "config.toml", config)
        result = trainer.run(resume=resuming, on_step=on_step)
        _check_trained(run.model, result)
        evaluations = distributed.all_sum(sum(o.evaluations for o in objectives), trainer.device)
        summary = None
        if distributed.rank() == 0:
            numbers, started = {}, time.monotonic()
            if result["stopped"] == "done":
                run.model.eval()
                numbers = final(run) if final is not None else run.report(settings.final_samples)
            summary = {"system": run.system.name, "objective": settings.objective, "seed": settings.seed,
                       "temperature": run.target.temperature, **result, "final_seconds": time.monotonic() - started,
                       "steps": settings.steps, "evaluations": evaluations, **numbers}
            with atomic_path(out / "summary.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=1) + "\n")
        return distributed.broadcast(summary)


def load_run(run_dir: Union[str, Path], device: Optional[str] = None) -> Run:
    """Rebuild a trained run from its directory (``model.pt``, else the last checkpoint)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise BoltzflowError(f"{run_dir} is not a run directory (no config.toml); train one with boltzflow train")
    settings = Settings.from_config(resolve_config(run_dir=run_dir, options={"device": device}))
    run = build_run(settings)
    path = model_file(run_dir)
    if not path.is_file():
        raise BoltzflowError(f"{run_dir} holds no trained model yet (no model.pt or checkpoints/last.pt)")
    state = read_tensors(path, map_location=device_of(settings.device))
    if path.name == LAST_CHECKPOINT.name:
        state = state.get("model") if isinstance(state, dict) else None
    try:
        run.model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError):  # other architecture, or not a state dict at all
        raise BoltzflowError(f"{path} does not hold a model of the architecture in {run_dir / 'config.toml'} "
                             "(changed settings, or a file from another run)") from None
    if not all(torch.isfinite(value).all() for value in run.model.state_dict().values() if value.is_floating_point()):
        raise BoltzflowError(f"{path} holds a model whose parameters are not all finite (NaN or inf): it cannot be "
                             "sampled; train the run again (e.g. with a lower --lr)")
    run.model.eval()
    return run
