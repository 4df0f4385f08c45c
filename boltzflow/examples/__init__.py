"""Small runnable examples: ``python -m boltzflow.examples.first_flow`` or ``boltzflow example``."""
