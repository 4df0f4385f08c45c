"""The ``boltzflow`` command-line application (installed as ``boltzflow.cli``)."""
