"""Files boltzflow writes and reads: atomic writes, checkpoints, TOML configurations, sample
files (``samples.h5``) and their export as MD trajectories."""

from .atomic import atomic_path, check_writable
from .checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .export import export_samples
from .samples import Samples, model_file, read_attributes, read_samples, sha256, write_samples
from .toml import dumps_toml, read_toml, write_toml

__all__ = ["Samples", "atomic_path", "check_writable", "dumps_toml", "export_samples", "load_checkpoint", "model_file",
           "read_attributes", "read_samples", "read_toml", "rng_state", "save_checkpoint", "set_rng_state",
           "sha256", "write_samples", "write_toml"]
