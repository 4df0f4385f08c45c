"""Files boltzflow writes and reads: atomic writes, checkpoints, TOML configurations."""

from .atomic import atomic_path
from .checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .toml import dumps_toml, read_toml, write_toml

__all__ = ["atomic_path", "dumps_toml", "load_checkpoint", "read_toml", "rng_state", "save_checkpoint",
           "set_rng_state", "write_toml"]
