"""Reference simulations to judge flows against: Langevin MD (``run_md``) and umbrella
sampling along a dihedral with MBAR (``run_umbrella``, ``analyse_umbrella``)."""

from .md import MDResult, run_md
from .umbrella import UmbrellaResult, analyse_umbrella, load_umbrella, run_umbrella

__all__ = ["MDResult", "UmbrellaResult", "analyse_umbrella", "load_umbrella", "run_md", "run_umbrella"]
