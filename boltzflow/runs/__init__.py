"""What works on a trained run: drawing and writing its samples (``samples``), the
free-energy report (``report``), the references it compares with (``references``) and the
export of samples as MD trajectories (``export``).

This floor sits above training: it loads runs (``boltzflow.training.run.load_run``) and uses
the estimators of ``boltzflow.analysis``, the file formats of ``boltzflow.io`` and the
reference simulations of ``boltzflow.reference``; nothing below imports it.
"""

from .export import export_samples
from .references import REFERENCE_KINDS, Comparison, Reference, load_reference, shipped_reference
from .report import FreeEnergyReport, WeightedSamples, free_energy_report, report_plots, samples_for, state_pairs
from .samples import write_samples

__all__ = ["REFERENCE_KINDS", "Comparison", "FreeEnergyReport", "Reference", "WeightedSamples", "export_samples",
           "free_energy_report", "load_reference", "report_plots", "samples_for", "shipped_reference", "state_pairs",
           "write_samples"]
