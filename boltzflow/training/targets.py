"""The Boltzmann target of a molecular system in the flow's coordinates.

    log p̃(z) = −u(x(z)) + log|det ∂x/∂z|        (up to log Z)

with ``x(z)`` the ``InternalCoordinates`` map (rigid-body motion integrated out) and ``u``
a reduced energy (torch or OpenMM backend). Mirror images at the declared chiral
centres are handled explicitly:

- ``mirror="penalize"`` (default): ``u + mirror_penalty`` (kT) for a wrong-handed sample:
  its importance weight is e^-100 relative, so estimates are unaffected, while it stays in
  a training batch (with ``-inf`` it would drop out of the loss and its log q term with it).
- ``mirror="exclude"``: log p̃ = −inf (the strict target, for analysis).

In the internal layout the flow cannot produce mirror images at all: the branch dihedrals
that fix each centre's handedness are intervals (``boltzflow.coordinates.normalization``).
A constant penalty adds no pathwise gradient, so that structural fix is what keeps a
reverse-KL flow on the right enantiomer; the penalty matters for the mixed layout, whose
Cartesian block can reflect a centre, and for weights.

Temperature: the energy module gives u at its own temperature T₀; the target at T uses
u·T₀/T (``temperature`` argument, or ``set_temperature`` during temperature annealing).

Energies pass through ``regularize`` (linear up to ``energy_high`` kT, logarithmic above,
NaN → +inf) unless ``energy_high`` is None, so a clash never produces NaN gradients.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..coordinates import InternalCoordinates, has_expected_chirality
from ..energy.reduced import regularize
from ..numerics import nan_to_neg_inf

MIRROR_MODES = ("penalize", "exclude")


class BoltzmannTarget(nn.Module):
    """``log_p = target(z)`` for z [batch, dim] on ``coordinates.domains``; counts evaluations.

    Args:
        energy: reduced energy module, positions [batch, n_atoms, 3] (nm) → u [batch].
        coordinates: the ``InternalCoordinates`` bijection (z → positions).
        chiral_centers: system.toml's chiral centres (dicts with center, substituents, expected).
        mirror: ``"penalize"`` or ``"exclude"`` (see the module docstring).
        mirror_penalty: kT added to a wrong-handed sample's energy when penalising.
        energy_high: reduced energy above which ``regularize`` softens u; None: raw u.
        temperature: K; default the energy module's temperature.
    """

    def __init__(self, energy: nn.Module, coordinates: InternalCoordinates,
                 chiral_centers: Sequence[dict] = (), mirror: str = "penalize",
                 mirror_penalty: float = 100.0, energy_high: Optional[float] = 1e3,
                 temperature: Optional[float] = None):
        super().__init__()
        if mirror not in MIRROR_MODES:
            raise ValueError(f"mirror must be one of {MIRROR_MODES}, got {mirror!r}")
        self.energy, self.coordinates = energy, coordinates
        self.chiral_centers = list(chiral_centers)
        self.mirror, self.mirror_penalty, self.energy_high = mirror, mirror_penalty, energy_high
        self.domains = coordinates.domains
        self.evaluations = 0
        self.set_temperature(temperature or energy.temperature)

    def set_temperature(self, temperature: float) -> None:
        """Target the Boltzmann distribution at ``temperature`` (K)."""
        if not temperature > 0:
            raise ValueError(f"temperature must be positive (K), got {temperature}")
        self.temperature = float(temperature)
        self.beta_factor = self.energy.temperature / self.temperature

    def evaluate(self, z: Tensor) -> dict[str, Tensor]:
        """Everything about z [batch, dim]: positions, u (raw, at ``temperature``), log|det J|,
        chirality, log_p."""
        xyz, log_det = self.coordinates(z)
        u = self.energy(xyz) * self.beta_factor
        self.evaluations += len(z)
        u_train = u if self.energy_high is None else regularize(u, high=self.energy_high)
        right_handed = has_expected_chirality(xyz, self.chiral_centers)
        if self.mirror == "penalize":
            u_train = torch.where(right_handed, u_train, u_train + self.mirror_penalty)
        log_p = -u_train + log_det
        if self.mirror == "exclude":
            log_p = torch.where(right_handed, log_p, torch.full_like(log_p, -math.inf))
        log_p = nan_to_neg_inf(log_p)
        return {"xyz": xyz, "u": u, "log_det": log_det, "right_handed": right_handed, "log_p": log_p}

    def forward(self, z: Tensor) -> Tensor:
        return self.evaluate(z)["log_p"]
