"""The molecular Boltzmann target against independent pieces: OpenMM energies, the
coordinates' own log-det, mirror images and clashes."""

import math

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

from boltzflow.systems import load_system
from boltzflow.training.targets import BoltzmannTarget

SYSTEM = load_system("alanine-dipeptide")


def openmm_reduced_energy(xyz: np.ndarray) -> np.ndarray:
    context = openmm.Context(SYSTEM.openmm_system, openmm.VerletIntegrator(1e-3),
                             openmm.Platform.getPlatformByName("Reference"))
    out = []
    for x in xyz:
        context.setPositions(x)
        out.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    return np.array(out) / SYSTEM.kT


@pytest.fixture(scope="module")
def ic():
    return SYSTEM.internal_coordinates()


def thermal_z(ic, n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xyz = torch.tensor(SYSTEM.positions) + 0.003 * torch.randn(n, 22, 3, generator=gen, dtype=torch.float64)
    return ic.inverse(xyz)[0]


def test_log_p_is_minus_openmm_energy_plus_log_det(ic):
    target = BoltzmannTarget(SYSTEM.energy().double(), ic, SYSTEM.chiral_centers, energy_high=None)
    z = thermal_z(ic)
    out = target.evaluate(z)
    _, log_det = ic(z)
    expected = -openmm_reduced_energy(out["xyz"].numpy()) + log_det.numpy()
    np.testing.assert_allclose(out["log_p"].numpy(), expected, rtol=1e-9, atol=1e-7)
    assert out["right_handed"].all() and target.evaluations == len(z)


@pytest.mark.parametrize("mirror", ["penalize", "exclude"])
def test_mirror_images_are_penalised_or_excluded(ic, mirror):
    target = BoltzmannTarget(SYSTEM.energy().double(), ic, SYSTEM.chiral_centers, mirror=mirror,
                             mirror_penalty=50.0, energy_high=None)
    xyz = ic(thermal_z(ic, n=3))[0]
    mirrored = ic.inverse(xyz * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))[0]
    plain = BoltzmannTarget(SYSTEM.energy().double(), ic, energy_high=None)(mirrored)
    out = target.evaluate(mirrored)
    assert not out["right_handed"].any()
    if mirror == "penalize":
        torch.testing.assert_close(out["log_p"], plain - 50.0)
    else:
        assert (out["log_p"] == -math.inf).all()


def test_clashes_and_nan_never_give_nan(ic):
    target = BoltzmannTarget(SYSTEM.energy().double(), ic, SYSTEM.chiral_centers)
    z = thermal_z(ic, n=3).requires_grad_()
    bad = z.detach().clone()
    bad[1, 0] = float("nan")
    log_p = target(torch.cat([z, bad]))
    assert not torch.isnan(log_p).any() and log_p[4] == -math.inf
    (grad,) = torch.autograd.grad(log_p[:3].sum(), z)
    assert torch.isfinite(grad).all()


def test_unknown_mirror_mode_is_named(ic):
    with pytest.raises(ValueError, match="penalize"):
        BoltzmannTarget(SYSTEM.energy(), ic, mirror="ignore")


def test_reverse_kl_steps_on_alanine_dipeptide_run_end_to_end(tmp_path):
    from boltzflow.flows import spline_flow
    from boltzflow.training import Schedule, Trainer, reverse_kl

    ic = SYSTEM.internal_coordinates().float()
    target = BoltzmannTarget(SYSTEM.energy().float(), ic, SYSTEM.chiral_centers)
    flow = spline_flow(ic.domains, layers=2, bins=4, hidden=(32,))
    trainer = Trainer(flow, lambda step: reverse_kl(flow, target, 16), Schedule(steps=3, lr=1e-3, log_every=1), tmp_path)
    summary = trainer.run()
    assert summary["step"] == 3 and target.evaluations == 48
    assert (tmp_path / "model.pt").is_file() and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
