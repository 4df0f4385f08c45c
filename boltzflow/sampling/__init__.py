"""MCMC kernels, annealed importance sampling and a prioritised replay buffer.

They work on any target ``log_p(x) -> [batch]`` of points ``x`` [batch, dim] whose gradient
autograd can take, on mixed real / interval / circle domains. Stochastic normalizing flows
and FAB (in ``boltzflow.training``) build on them.
"""

from .ais import AIS, SPACINGS, AISResult, annealing_schedule, gradient_scale, spread
from .kernels import HMC, KERNELS, MALA, Kernel, MCMCInfo, Metropolis
from .replay import PrioritisedReplayBuffer
from .targets import LogDensity, log_prob, log_prob_and_grad

__all__ = [
    "AIS", "AISResult", "HMC", "KERNELS", "gradient_scale", "Kernel", "LogDensity", "MALA", "MCMCInfo", "Metropolis",
    "PrioritisedReplayBuffer", "SPACINGS", "annealing_schedule", "log_prob", "log_prob_and_grad", "spread",
]
