"""Sample files (``samples.h5``): conformations drawn from a trained run, with their weights.

Layout (h5py; every dataset chunked along the samples and gzip-compressed, with a ``units``
attribute; N samples, A atoms, D internal coordinates)::

    positions        [N, A, 3]  run dtype  nm
    z                [N, D]     run dtype  internal coordinates (the flow's space)
    log_q            [N]        float64    log density of the model at z
    u                [N]        float64    reduced energy E/kT at the run's temperature
    log_w            [N]        float64    self-normalised log importance weights: logsumexp = 0
                                           (the subtracted constant is the attribute log_w_logsumexp;
                                           -inf = weight 0; mirror images carry the run's
                                           energy.mirror penalty or weight 0)
    log_w_flow       [N]        float64    only with an AIS correction: the flow-only log-weights
                                           log p̃ − log q of the flow sample each chain started from
                                           (not of positions[i]), self-normalised likewise
                                           (attribute log_w_flow_logsumexp)
    right_handed     [N]        bool       every chiral centre has its declared label
    cvs/<name>       [N]        float64    the system's named dihedrals, radians in [-π, π]
    states/<name>    [N]        bool       membership of each named state
    resampled/positions [K, A, 3], resampled/indices [K] (int64, into the N samples):
                     K unweighted, Boltzmann-distributed conformations (systematic resampling,
                     mirror images excluded); only with ``resample=K``

File attributes: format, format_version, system (what ``load_system`` takes), system_name,
temperature (K), kT (kJ/mol), units (JSON), n, seed, run, objective, model_file,
model_sha256, boltzflow_version, log_w_logsumexp (log Z = log_w_logsumexp − log N),
sampling_seconds (wall time of drawing and writing, without an AIS warm-up).
With an AIS correction (``boltzflow.training.correction``): z, positions, u and log_q are
those of the chains' end points and log_w their AIS weights; ais_levels (K), ais_kernel,
ais_leapfrog, ais_steps_per_level, ais_spacing, ais_betas [K+2], ais_step_size_initial,
ais_step_sizes [K, D] (frozen after the warm-up), ais_acceptance [K] (production mean),
ais_warmup_batches, ais_warmup_size, ais_precondition, ais_warmup_evaluations, ais_warmup_seconds,
ais_gradient_evaluations_per_sample (log q and log p̃ with gradients, per chain),
ais_extra_evaluations_per_sample (target evaluations per sample beyond the one a plain draw
makes, measured), log_w_flow_logsumexp.

The file is written under a temporary name beside ``path`` and renamed when complete, so
an interrupted run never leaves a partial file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import h5py
import numpy as np
import torch

import boltzflow

from ..errors import BoltzflowError
from ..numerics import clean_log
from ..units import thermal_energy
from .atomic import atomic_path, nearest_existing
from .checkpoints import LAST_CHECKPOINT

FORMAT, FORMAT_VERSION = "boltzflow-samples", 1
UNITS = {"positions": "nm", "z": "internal coordinates (bonds and angles normalised, dihedrals in radians)",
         "log_q": "log density of z", "u": "kT", "log_w": "log of weights summing to 1",
         "log_w_flow": "log of weights summing to 1", "right_handed": "boolean",
         "cvs": "radians", "states": "boolean", "resampled/positions": "nm", "resampled/indices": "sample index"}
CHUNK_BYTES = 1 << 18
SCALARS = ("log_q", "u", "log_w", "right_handed")


@dataclass(frozen=True)
class Samples:
    """The content of a samples file as numpy arrays (layout in the module docstring).

    ``positions``, ``z`` and ``resampled`` are None when not read (or, for ``resampled``,
    not written); ``resampled`` holds ``positions`` and ``indices``."""

    attrs: dict
    log_q: np.ndarray
    u: np.ndarray
    log_w: np.ndarray
    right_handed: np.ndarray
    cvs: dict
    states: dict
    log_w_flow: Optional[np.ndarray] = None
    positions: Optional[np.ndarray] = None
    z: Optional[np.ndarray] = None
    resampled: Optional[dict] = None

    @property
    def log_w_unnormalized(self) -> np.ndarray:
        """log p̃ − log q [N], the log-weights before normalisation (their log-mean-exp is log Ẑ)."""
        return self.log_w + self.attrs["log_w_logsumexp"]


def model_file(run_dir: Union[str, Path]) -> Path:
    """The model file ``load_run`` reads: ``model.pt``, else ``checkpoints/last.pt``."""
    run_dir = Path(run_dir)
    final = run_dir / "model.pt"
    return final if final.is_file() else run_dir / LAST_CHECKPOINT


def sha256(path: Union[str, Path]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_batches(run, n: int, batch_size: int, seed: int = 0, correction=None) -> Iterator[dict]:
    """Draw ``n`` samples of ``run`` in batches: dicts of CPU numpy arrays with the datasets of
    a samples file (``log_w`` not yet normalised) and ``cvs`` / ``states`` dicts.

    ``correction``: an ``AISCorrection``, warmed up (if not yet) before the first batch;
    batches then also hold ``log_w_flow``.
    Seeds torch's RNG with ``seed`` inside a fork, so the caller's RNG state is untouched."""
    if n < 1 or batch_size < 1:
        raise BoltzflowError(f"the number of samples and the batch size must be >= 1, got {n} and {batch_size}")
    device = next(run.flow.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if correction is not None and correction.ais is None:
            correction.warm_up(run)
        weights = ("log_q", "u", "log_w") if correction is None else ("log_q", "u", "log_w", "log_w_flow")
        for start in range(0, n, batch_size):
            draw = run.draw(min(batch_size, n - start), correction=correction)
            cvs = run.system.collective_variables(draw["xyz"])
            states = {name: state.contains(cvs) for name, state in run.system.states.items()}
            batch = {"positions": draw["xyz"], "z": draw["z"], "right_handed": draw["right_handed"],
                     **{key: draw[key].double() for key in weights}}
            batch = {key: value.cpu().numpy() for key, value in batch.items()}
            batch["cvs"] = {name: value.double().cpu().numpy() for name, value in cvs.items()}
            batch["states"] = {name: value.cpu().numpy() for name, value in states.items()}
            yield batch


def _create(f: h5py.File, name: str, shape: tuple, dtype, units: str) -> h5py.Dataset:
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    rows = max(1, min(shape[0], CHUNK_BYTES // max(1, row_bytes)))
    dataset = f.create_dataset(name, shape=shape, dtype=dtype, chunks=(rows, *shape[1:]), compression="gzip",
                               compression_opts=4, shuffle=True)
    dataset.attrs["units"] = units
    return dataset


def _writers(f: h5py.File, batch: dict, n: int) -> dict:
    """Datasets of the file, shaped after the first batch: flat name → dataset."""
    flat = {key: value for key, value in batch.items() if key not in ("cvs", "states")}
    for group in ("cvs", "states"):
        flat.update({f"{group}/{name}": value for name, value in batch[group].items()})
    return {key: _create(f, key, (n, *value.shape[1:]), value.dtype, UNITS[key.split("/")[0]])
            for key, value in flat.items()}


def _normalize_log_weights(dataset: h5py.Dataset, block: int) -> float:
    """Clean (NaN, +inf → -inf) and self-normalise the log-weights in place; returns the logsumexp."""
    total = -math.inf
    for start in range(0, len(dataset), block):
        values = torch.from_numpy(dataset[start:start + block])
        values = clean_log(values)
        dataset[start:start + block] = values.numpy()
        total = float(torch.logaddexp(torch.tensor(total, dtype=torch.float64), torch.logsumexp(values, 0)))
    if math.isfinite(total):
        for start in range(0, len(dataset), block):
            dataset[start:start + block] = dataset[start:start + block] - total
    return total


def _write_resampled(f: h5py.File, k: int, seed: int, block: int) -> None:
    """``resampled/``: ``k`` systematic draws from the normalised weights, mirror images excluded."""
    from ..analysis.resampling import systematic_resample

    log_w = torch.from_numpy(f["log_w"][()])
    generator = torch.Generator().manual_seed(seed)
    indices = systematic_resample(log_w, k, exclude=~torch.from_numpy(f["right_handed"][()]),
                                  generator=generator).numpy()
    positions = f["positions"]
    out = _create(f, "resampled/positions", (k, *positions.shape[1:]), positions.dtype, UNITS["positions"])
    for start in range(0, len(positions), block):  # one sequential pass: indices are ascending
        lo, hi = np.searchsorted(indices, [start, start + block])
        if hi > lo:
            out[lo:hi] = positions[start:start + block][indices[lo:hi] - start]
    _create(f, "resampled/indices", (k,), np.int64, UNITS["resampled/indices"])[:] = indices
    f["resampled"].attrs.update({"method": "systematic", "mirror_images": "excluded", "seed": seed})


def check_disk(path: Path, n: int, resample: int, n_atoms: int, itemsize: int) -> None:
    """Refuse, before any work, a samples file larger than the free space where it goes
    (an upper bound: uncompressed positions, z, weights, labels and resampled conformations)."""
    per_sample = (3 * n_atoms + 3 * n_atoms - 6) * itemsize + 128
    need = n * per_sample + resample * (3 * n_atoms * itemsize + 8)
    free = shutil.disk_usage(nearest_existing(path.parent)).free
    if need > free:
        raise BoltzflowError(f"{n:,} samples{f' and {resample:,} resampled conformations' if resample else ''} need "
                             f"up to {need / 1e9:,.1f} GB in {path}, but {free / 1e9:,.1f} GB are free there; "
                             "draw fewer (-n, --resample) or write elsewhere (--out)")


def write_samples(run, path: Union[str, Path], n: int, batch_size: int = 8192, seed: int = 0, resample: int = 0,
                  model: Union[str, Path, None] = None, run_dir: Union[str, Path, None] = None,
                  progress: Optional[Callable[[int, int], None]] = None, correction=None) -> Path:
    """Draw ``n`` samples from ``run`` (a ``boltzflow.training.run.Run``) in batches of
    ``batch_size`` and write them to ``path`` (layout in the module docstring).

    ``correction``: an ``AISCorrection`` (``boltzflow.training.correction``) applied to every
    batch; its settings, frozen step sizes, acceptance and costs go into the attributes.

    ``resample``: also write that many unweighted conformations under ``resampled/``.
    ``model``: the model file the run was loaded from (its SHA-256 goes into the attributes;
    default ``model_file(run_dir)`` when ``run_dir`` is given). ``progress(done, n)`` is called
    after each batch. Returns ``path``; an existing file is replaced only on success.
    """
    if resample < 0:
        raise BoltzflowError(f"--resample must be >= 0 conformations, got {resample}")

    path = Path(path)
    check_disk(path, n, resample, run.system.n_atoms, np.dtype(run.config["dtype"]).itemsize)
    if model is None and run_dir is not None:
        model = model_file(run_dir)
    system = run.config["system"]  # a name, or a folder / system.toml: then made absolute
    attrs = {"format": FORMAT, "format_version": FORMAT_VERSION,
             "system": str(Path(system).resolve()) if Path(system).exists() else system,
             "system_name": run.system.name, "temperature": run.target.temperature,
             "kT": thermal_energy(run.target.temperature), "units": json.dumps(UNITS), "n": n, "seed": seed,
             "run": str(Path(run_dir).resolve()) if run_dir is not None else "", "objective": run.config["objective"],
             "model_file": str(Path(model).resolve()) if model is not None else "",
             "model_sha256": sha256(model) if model is not None else "", "boltzflow_version": boltzflow.__version__}
    if correction is not None:
        correction.check_run(run.config)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(attrs)
        datasets, done = None, 0
        started = time.perf_counter()
        for batch in sample_batches(run, n, batch_size, seed, correction):
            if datasets is None:
                datasets = _writers(f, batch, n)
            size = len(batch["u"])
            for key, dataset in datasets.items():
                group, _, name = key.partition("/")
                dataset[done:done + size] = batch[group][name] if name else batch[key]
            done += size
            if progress is not None:
                progress(done, n)
        # production wall time: drawing and writing, without the AIS warm-up
        f.attrs["sampling_seconds"] = time.perf_counter() - started - (correction.warmup_seconds if correction else 0.0)
        f.attrs["log_w_logsumexp"] = _normalize_log_weights(f["log_w"], 1 << 20)
        if correction is not None:
            f.attrs["log_w_flow_logsumexp"] = _normalize_log_weights(f["log_w_flow"], 1 << 20)
            f.attrs.update(correction.attributes())
        if resample:
            _write_resampled(f, resample, seed, max(1, (1 << 26) // max(1, f["positions"][0].nbytes)))
    return path


def _check(f: h5py.File, path: Path) -> None:
    if f.attrs.get("format") != FORMAT:
        raise BoltzflowError(f"{path} is not a boltzflow samples file (no format attribute {FORMAT!r}); "
                             "write one with: boltzflow sample RUN")


@contextmanager
def open_samples(path: Path) -> Iterator[h5py.File]:
    """Open a samples file for reading; a damaged one (truncated copy, missing dataset) is one clear error."""
    if not path.is_file():
        raise BoltzflowError(f"samples file {path} not found; write one with: boltzflow sample RUN")
    if not h5py.is_hdf5(path):
        raise BoltzflowError(f"{path} is not an HDF5 file; expected a samples file from boltzflow sample")
    try:
        with h5py.File(path, "r") as f:
            _check(f, path)
            yield f
    except (OSError, KeyError) as error:
        raise BoltzflowError(f"cannot read {path}: the file is damaged or incomplete ({error}); "
                             "write it again with boltzflow sample") from None


def read_attributes(path: Union[str, Path]) -> dict:
    """The file attributes of a samples file (``units`` decoded from JSON)."""
    path = Path(path)
    with open_samples(path) as f:
        attrs = {key: value.item() if isinstance(value, np.generic) else value for key, value in f.attrs.items()}
    attrs["units"] = json.loads(attrs["units"])
    return attrs


def read_samples(path: Union[str, Path], positions: bool = True) -> Samples:
    """Read a samples file; ``positions=False`` skips the large arrays (positions, z, resampled)."""
    path = Path(path)
    attrs = read_attributes(path)
    with open_samples(path) as f:
        scalars = {key: f[key][()] for key in SCALARS}
        if "log_w_flow" in f:
            scalars["log_w_flow"] = f["log_w_flow"][()]
        groups = {group: {name: f[group][name][()] for name in f.get(group, {})} for group in ("cvs", "states")}
        large = {}
        if positions:
            large = {"positions": f["positions"][()], "z": f["z"][()]}
            if "resampled" in f:
                large["resampled"] = {name: f["resampled"][name][()] for name in ("positions", "indices")}
    return Samples(attrs, **scalars, **groups, **large)
