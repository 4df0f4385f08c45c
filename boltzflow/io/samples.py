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

``boltzflow.runs.samples.write_samples`` writes it, under a temporary name beside the path,
renamed when complete, so an interrupted run never leaves a partial file under the final
name; this module reads it.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import h5py
import numpy as np

from ..errors import BoltzflowError
from .checkpoints import LAST_CHECKPOINT

FORMAT, FORMAT_VERSION = "boltzflow-samples", 1
UNITS = {"positions": "nm", "z": "internal coordinates (bonds and angles normalised, dihedrals in radians)",
         "log_q": "log density of z", "u": "kT", "log_w": "log of weights summing to 1",
         "log_w_flow": "log of weights summing to 1", "right_handed": "boolean",
         "cvs": "radians", "states": "boolean", "resampled/positions": "nm", "resampled/indices": "sample index"}
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
