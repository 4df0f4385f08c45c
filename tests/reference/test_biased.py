"""Fixed-bias MD: the OpenMM force is the bias formula, the fit recovers a Fourier series,
reweighting exact draws of a biased density gives the quadrature answer, and a run resumes."""

import math
from types import SimpleNamespace

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

from boltzflow.errors import BoltzflowError
from boltzflow.geometry import dihedral_angles
from boltzflow.reference.biased import (FourierBias, bias_forces, load_frames, log_weights, repeat_free_energies,
                                        run_biased, transitions)
from boltzflow.reference.simulation import langevin_context
from boltzflow.systems import State

BIAS = FourierBias((3.0, -1.5, 0.5), (2.0, 0.7, -0.4))  # kJ/mol


def test_force_energy_is_the_formula_at_boltzflows_dihedral():
    system = openmm.System()
    for _ in range(4):
        system.addParticle(1.0)
    system.addForce(BIAS.force([(0, 1, 2, 3)]))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    rng = np.random.default_rng(0)
    for _ in range(20):
        xyz = rng.normal(size=(4, 3))
        context.setPositions(xyz)
        energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        theta = dihedral_angles(torch.from_numpy(xyz)[None], torch.tensor([[0, 1, 2, 3]]))[0, 0].item()
        assert energy == pytest.approx(BIAS.energy(theta), abs=1e-9)


def test_biased_context_adds_each_dihedrals_bias(system):
    other = FourierBias((-1.0, 0.0, 2.0), (0.5, 0.0, 0.0))
    biased = langevin_context(system, "Reference", forces=bias_forces(system, {"phi": BIAS, "psi": other}))
    plain = langevin_context(system, "Reference")
    xyz = system.positions + np.random.default_rng(2).normal(scale=0.02, size=system.positions.shape)
    energies = []
    for context in (biased, plain):
        context.setPositions(xyz)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    cvs = {k: v.item() for k, v in system.collective_variables(torch.from_numpy(xyz)[None]).items()}
    assert energies[0] - energies[1] == pytest.approx(BIAS.energy(cvs["phi"]) + other.energy(cvs["psi"]), abs=1e-6)


def test_fit_of_a_fourier_profile_is_exact():
    theta = np.linspace(-math.pi, math.pi, 72, endpoint=False)
    kT, scale = 2.5, 0.8
    profile = -BIAS.energy(theta) / (scale * kT) + 4.0  # F (kT) whose bias is BIAS
    fitted = FourierBias.from_profile(theta, profile, kT, scale, order=3)
    np.testing.assert_allclose(fitted.cos_k + fitted.sin_k, BIAS.cos_k + BIAS.sin_k, atol=1e-10)
    with pytest.raises(BoltzflowError, match="finite bins"):
        FourierBias.from_profile(theta[:5], profile[:5], kT, scale, order=3)


def test_reweighted_draws_of_the_biased_density_give_the_quadrature_answer():
    kT = 2.5
    grid = np.linspace(-math.pi, math.pi, 20_001)
    f = -3 * np.cos(grid + 1.3) + 1.5 * np.sin(2 * grid)  # kT: 1.4% at φ > 0
    p = np.exp(-f)
    exact = p[grid > 0].sum() / p.sum()
    bias = FourierBias.from_profile(grid, f, kT, scale=0.9, order=3)
    biased = p * np.exp(-bias.energy(grid) / kT)
    cdf = np.cumsum(biased) / biased.sum()
    draws = grid[np.searchsorted(cdf, np.random.default_rng(1).random(200_000))]
    system = SimpleNamespace(states={"negative": State("negative", {"phi": (-math.pi, 0.0)}),
                                     "positive": State("positive", {"phi": (0.0, math.pi)})})
    cvs = {"phi": draws}
    populations, delta = repeat_free_energies(system, cvs, log_weights(cvs, {"phi": bias}, kT))
    assert exact < 0.05 and populations["positive"] == pytest.approx(exact, rel=0.03)
    assert delta["negative -> positive"] == pytest.approx(math.log((1 - exact) / exact), abs=0.03)


def test_transitions_need_the_other_core():
    degrees = np.radians([-90, -10, 10, -10, 10, 90, 170, -170, 100, -60, 179])
    assert transitions(degrees) == 2  # -90 → 90 and 100 → -60; ±170..180 and ±10 are no core


def test_run_resumes_and_refuses_other_settings(system, tmp_path):
    path = tmp_path / "repeat.npz"
    stop = {}

    def interrupt(done, total):
        if done == 2 and not stop:
            stop["at"] = done
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_biased(system, {"phi": BIAS}, ns=4e-5, out=path, seed=3, sample_interval=10, checkpoint_frames=2,
                   progress=interrupt)
    assert len(load_frames(path)[1]) == 2
    run_biased(system, {"phi": BIAS}, ns=4e-5, out=path, seed=3, sample_interval=10, checkpoint_frames=2)
    cvs, time, wall = load_frames(path)
    np.testing.assert_allclose(time, 0.01 * np.arange(1, 5))
    assert set(cvs) == {"phi", "psi"} and len(cvs["phi"]) == 4 and wall > 0
    with pytest.raises(BoltzflowError, match="other settings"):
        run_biased(system, {"phi": BIAS}, ns=4e-5, out=path, seed=4, sample_interval=10)
    with pytest.raises(BoltzflowError, match="named dihedrals"):
        run_biased(system, {"chi": BIAS}, ns=4e-5, out=path)
