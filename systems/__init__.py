"""Molecular systems shipped with boltzflow: one folder per system (``system.toml`` and
``structure.pdb``, plus the script that built the structure). Installed as package data."""
