"""Importance-weighted estimates from flow samples (ESS, log Z; free energies to come)."""

from .weights import kish_ess, log_normalizer, normalized_log_weights

__all__ = ["kish_ess", "log_normalizer", "normalized_log_weights"]
