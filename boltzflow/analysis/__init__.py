"""Estimates from weighted samples: importance weights, ESS, PSIS k̂, log Z, free energies,
PMFs, comparisons with a reference, MBAR for umbrella sampling, plots and systematic
resampling. The free-energy report of a trained run is ``boltzflow.runs.report``.

``plots`` and ``mbar`` are imported on use (matplotlib, pymbar): ``from
boltzflow.analysis.plots import plot_pmf``.
"""

from .compare import eubo, forward_kl, kl_divergence, marginal_kl, ramachandran_divergence, total_variation
from .estimate import Estimate
from .free_energy import (MIN_STATE_ESS, Average, Profile, StateSamples, Surface, delta_f, pmf, population,
                          ramachandran, reweighted_average, state_delta_f, state_samples, withheld)
from .psis import ParetoDiagnostic, khat_threshold, pareto_diagnostic, pareto_khat
from .resampling import systematic_resample
from .weights import kish_ess, log_normalizer, log_normalizer_interval, normalized_log_weights

__all__ = [
    "MIN_STATE_ESS", "Average", "Estimate", "ParetoDiagnostic", "Profile", "StateSamples", "Surface", "delta_f",
    "eubo", "forward_kl", "khat_threshold", "kish_ess", "kl_divergence", "log_normalizer",
    "log_normalizer_interval", "marginal_kl", "normalized_log_weights", "pareto_diagnostic", "pareto_khat", "pmf",
    "population", "ramachandran", "ramachandran_divergence", "reweighted_average", "state_delta_f", "state_samples",
    "systematic_resample", "total_variation", "withheld",
]
