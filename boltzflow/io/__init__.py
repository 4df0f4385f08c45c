"""Files boltzflow writes and reads: atomic writes, checkpoints, TOML configurations and the
sample file format (``samples.h5``; drawing and writing samples of a run, and exporting
them, are ``boltzflow.runs``)."""

from .atomic import atomic_path, check_writable
from .checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .samples import Samples, model_file, read_attributes, read_samples, sha256
from .toml import dumps_toml, read_toml, write_toml

__all__ = ["Samples", "atomic_path", "check_writable", "dumps_toml", "load_checkpoint", "model_file",
           "read_attributes", "read_samples", "read_toml", "rng_state", "save_checkpoint", "set_rng_state",
           "sha256", "write_toml"]
