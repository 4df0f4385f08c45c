"""Drawing samples from a trained run and writing them to a samples file (``samples.h5``;
layout in ``boltzflow.io.samples``), with an optional AIS correction and resampling."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import h5py
import numpy as np
import torch

import boltzflow

from ..analysis.resampling import systematic_resample
from ..errors import BoltzflowError
from ..io.atomic import atomic_path, nearest_existing
from ..io.samples import FORMAT, FORMAT_VERSION, UNITS, model_file, sha256
from ..numerics import clean_log
from ..units import thermal_energy

CHUNK_BYTES = 1 << 18


def sample_batches(run, n: int, batch_size: int, seed: int = 0, correction=None,
                   warmup_progress: Optional[Callable[[int, int], None]] = None) -> Iterator[dict]:
    """Draw ``n`` samples of ``run`` in batches: dicts of CPU numpy arrays with the datasets of
    a samples file (``log_w`` not yet normalised) and ``cvs`` / ``states`` dicts.

    ``correction``: an ``AISCorrection``, warmed up (if not yet) before the first batch, calling
    ``warmup_progress(done, batches)`` after each warm-up batch; batches then also hold ``log_w_flow``.
    Seeds torch's RNG with ``seed`` inside a fork, so the caller's RNG state is untouched."""
    if n < 1 or batch_size < 1:
        raise BoltzflowError(f"the number of samples and the batch size must be >= 1, got {n} and {batch_size}")
    device = next(run.flow.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if correction is not None and correction.ais is None:
            correction.warm_up(run, warmup_progress)
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
                  progress: Optional[Callable[[int, int], None]] = None, correction=None,
                  warmup_progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Draw ``n`` samples from ``run`` (a ``boltzflow.training.run.Run``) in batches of
    ``batch_size`` and write them to ``path`` (layout in the module docstring).

    ``correction``: an ``AISCorrection`` (``boltzflow.training.correction``) applied to every
    batch; its settings, frozen step sizes, acceptance and costs go into the attributes.

    ``resample``: also write that many unweighted conformations under ``resampled/``.
    ``model``: the model file the run was loaded from (its SHA-256 goes into the attributes;
    default ``model_file(run_dir)`` when ``run_dir`` is given). ``progress(done, n)`` is called
    after each batch, ``warmup_progress(done, batches)`` after each AIS warm-up batch. Returns
    ``path``; an existing file is replaced only on success.
    """
    if resample < 0:
        raise BoltzflowError(f"resample must be >= 0 conformations, got {resample}")

    path = Path(path)
    check_disk(path, n, resample, run.system.n_atoms, np.dtype(run.settings.dtype).itemsize)
    if model is None and run_dir is not None:
        model = model_file(run_dir)
    system = run.settings.system  # a name, or a folder / system.toml: then made absolute
    attrs = {"format": FORMAT, "format_version": FORMAT_VERSION,
             "system": str(Path(system).resolve()) if Path(system).exists() else system,
             "system_name": run.system.name, "temperature": run.target.temperature,
             "kT": thermal_energy(run.target.temperature), "units": json.dumps(UNITS), "n": n, "seed": seed,
             "run": str(Path(run_dir).resolve()) if run_dir is not None else "", "objective": run.settings.objective,
             "model_file": str(Path(model).resolve()) if model is not None else "",
             "model_sha256": sha256(model) if model is not None else "", "boltzflow_version": boltzflow.__version__}
    if correction is not None:
        correction.check_objective(run.settings.objective)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(attrs)
        datasets, done = None, 0
        started = time.perf_counter()
        for batch in sample_batches(run, n, batch_size, seed, correction, warmup_progress):
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
