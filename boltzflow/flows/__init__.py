"""Normalising flows over mixed circle / interval / real domains.

Conventions: ``forward`` maps base → data (sampling) and returns ``(y, log|det ∂y/∂x|)``;
points are [batch, dim]; log-densities are [batch].
"""

from .autoregressive import AffineAutoregressive, Autoregressive, SplineAutoregressive
from .base import BaseDistribution, GaussianMixture, ProductBase
from .bijection import Bijection
from .builders import spline_flow
from .coupling import AffineCoupling, Coupling, SplineCoupling, alternating_mask, random_mask
from ..domains import Circle, Domain, Interval, Real, wrap
from .flow import Flow
from .linear import ActNorm, CircularShift, LULinear, Permutation
from .planar_radial import Planar, Radial
from .splines import rational_quadratic
from .transformers import AffineTransformer, SplineTransformer, Transformer

__all__ = [
    "ActNorm", "AffineAutoregressive", "AffineCoupling", "AffineTransformer", "Autoregressive",
    "BaseDistribution", "Bijection", "Circle", "Coupling", "CircularShift", "Domain", "Flow",
    "GaussianMixture", "Interval", "LULinear", "Permutation", "Planar", "ProductBase",
    "Radial", "Real", "SplineAutoregressive", "SplineCoupling", "SplineTransformer", "Transformer",
    "alternating_mask", "random_mask", "rational_quadratic", "spline_flow", "wrap",
]
