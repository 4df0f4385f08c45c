"""Estimates from weighted samples: importance weights, ESS, PSIS k̂, log Z, free energies,
PMFs, comparisons with a reference, MBAR for umbrella sampling, plots, systematic
resampling and the free-energy report of a trained flow.

``plots`` and ``mbar`` are imported on use (matplotlib, pymbar): ``from
boltzflow.analysis.plots import plot_pmf``.
"""

from .compare import eubo, forward_kl, kl_divergence, marginal_kl, ramachandran_divergence, total_variation
from .estimate import Estimate
from .free_energy import (Average, Profile, Surface, delta_f, pmf, population, ramachandran, reweighted_average,
                          state_delta_f)
from .psis import ParetoDiagnostic, khat_threshold, pareto_diagnostic, pareto_khat
from .report import (Comparison, FreeEnergyReport, Reference, WeightedSamples, free_energy_report, load_reference,
                     report_plots, samples_for, state_pairs)
from .resampling import systematic_resample
from .weights import kish_ess, log_normalizer, log_normalizer_interval, normalized_log_weights

__all__ = [
    "Average", "Comparison", "Estimate", "FreeEnergyReport", "ParetoDiagnostic", "Profile", "Reference", "Surface",
    "WeightedSamples", "delta_f", "eubo", "forward_kl", "free_energy_report", "khat_threshold", "kish_ess",
    "kl_divergence", "load_reference", "log_normalizer", "log_normalizer_interval", "marginal_kl",
    "normalized_log_weights", "pareto_diagnostic", "pareto_khat", "pmf", "population", "ramachandran", "ramachandran_divergence",
    "report_plots", "reweighted_average", "samples_for", "state_delta_f", "state_pairs", "systematic_resample",
    "total_variation",
]
