"""Cartesian ⇄ internal coordinates: Z-matrices, the InternalCoordinates bijection, chirality.

``InternalCoordinates.forward`` maps normalised internal coordinates z [batch, dim]
(``[bonds | angles | dihedrals | Cartesian PCA]``, with ``domains`` ready for
``spline_flow``) to positions [batch, n_atoms, 3] in nm, with the exact physical
log|det J|; ``inverse`` maps back. ``system.internal_coordinates()`` configures one for a
system.
"""

from .cartesian import CartesianBlock
from .chirality import D, L, chirality, find_chiral_centers, has_expected_chirality, signed_volumes
from .fixman import fixman_log_factor
from .internal import InternalCoordinates, for_system
from .normalization import Normalization, circular_mean
from .rotors import RotorSectors, find_rotors
from .zmatrix import ZMatrix, ZMatrixError, build_zmatrix

__all__ = [
    "CartesianBlock", "D", "InternalCoordinates", "L", "Normalization", "RotorSectors", "ZMatrix", "ZMatrixError",
    "build_zmatrix", "chirality", "circular_mean", "find_chiral_centers", "find_rotors", "fixman_log_factor",
    "for_system", "has_expected_chirality", "signed_volumes",
]
