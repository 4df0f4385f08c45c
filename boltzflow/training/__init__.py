"""Training Boltzmann generators: objectives and the trainer (checkpoints, resume, limits)."""

from .objectives import forward_kl, reverse_kl
from .targets import BoltzmannTarget
from .trainer import Schedule, Trainer, parse_duration

__all__ = ["BoltzmannTarget", "Schedule", "Trainer", "forward_kl", "parse_duration", "reverse_kl"]
