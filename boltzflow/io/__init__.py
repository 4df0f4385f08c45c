"""Files boltzflow writes and reads: atomic writes, checkpoints (HDF5 samples and trajectory
export to come)."""

from .atomic import atomic_path
from .checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state

__all__ = ["atomic_path", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]
