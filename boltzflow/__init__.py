"""boltzflow: Boltzmann generators for molecules with normalising flows."""

__version__ = "0.1.0"
