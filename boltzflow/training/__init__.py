"""Training Boltzmann generators: objectives (reverse KL, maximum likelihood, stochastic
normalizing flows, FAB, temperature annealing) and the trainer (checkpoints, resume, limits)."""

from .annealing import TemperatureAnnealing, temperature_ladder
from .fab import FAB
from .objectives import DataAndReverseKL, Objective, forward_kl, reverse_kl
from .settings import OBJECTIVES, Settings
from .snf import StochasticFlow, snf_forward_kl, snf_reverse_kl
from .targets import BoltzmannTarget
from .trainer import Schedule, Trainer, parse_duration

__all__ = [
    "DataAndReverseKL", "FAB", "OBJECTIVES", "BoltzmannTarget", "Objective", "Schedule", "Settings", "StochasticFlow",
    "TemperatureAnnealing", "Trainer",
    "forward_kl", "parse_duration", "reverse_kl", "snf_forward_kl", "snf_reverse_kl", "temperature_ladder",
]
