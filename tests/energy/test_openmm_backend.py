"""The OpenMM backend: worker pool against one Reference context, order, gradients, crashes."""

import numpy as np
import pytest
import torch

from boltzflow.energy.openmm_backend import OpenMMPool
from boltzflow.systems import load_system

from .reference import conformations, reference_energies_forces


@pytest.fixture(scope="module")
def system():
    return load_system("alanine-dipeptide")


@pytest.mark.parametrize("batch", [1, 7])
def test_pool_matches_single_reference_context_in_order(system, batch):
    xyz, _ = conformations(system.positions, n_thermal=batch - 1, n_clash=0, seed=batch)
    ref_e, ref_f = reference_energies_forces(system.openmm_system, xyz)
    with OpenMMPool(system.openmm_system, workers=2, platform="Reference") as pool:
        e, f = pool.evaluate(xyz)
    assert e.shape == (batch,) and f.shape == (batch, system.n_atoms, 3)
    np.testing.assert_allclose(e, ref_e, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(f, ref_f, rtol=1e-10, atol=1e-8)


def test_reduced_energy_and_gradient(system):
    energy = system.energy("openmm", platform="Reference")
    xyz, _ = conformations(system.positions, n_thermal=4, n_clash=0)
    x = torch.tensor(xyz, requires_grad=True)
    u = energy(x)
    (grad,) = torch.autograd.grad(u.sum(), x)
    ref_e, ref_f = reference_energies_forces(system.openmm_system, xyz)
    np.testing.assert_allclose(u.detach().numpy(), ref_e / system.kT, rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), -ref_f / system.kT, rtol=1e-10, atol=1e-10)


def test_second_derivatives_are_refused_not_zero(system):
    """OpenMM gives forces, not Hessians: a create_graph through it fails loudly instead of
    leaving the energy's Hessian out of a second derivative."""
    energy = system.energy("openmm", platform="Reference")
    x = torch.tensor(system.positions[None], requires_grad=True)
    with pytest.raises(RuntimeError, match="no second derivatives"):
        torch.autograd.grad((energy(x) + (x**2).sum()).sum(), x, create_graph=True)


def test_backends_agree(system):
    xyz, _ = conformations(system.positions, n_thermal=8, n_clash=2)
    x = torch.tensor(xyz)
    u_torch = system.energy("torch").double()(x)
    u_openmm = system.energy("openmm", platform="Reference")(x)
    torch.testing.assert_close(u_torch, u_openmm, rtol=1e-9, atol=1e-9)


def test_crashed_worker_is_an_error_not_a_hang(system):
    pool = OpenMMPool(system.openmm_system, workers=2, platform="Reference")
    pool.evaluate(system.positions[None])
    pool._processes[1].kill()
    with pytest.raises(RuntimeError, match="worker process died"):
        pool.evaluate(np.repeat(system.positions[None], 4, axis=0))
    assert not any(p.is_alive() for p in pool._processes)
    with pytest.raises(RuntimeError, match="closed"):
        pool.evaluate(system.positions[None])


def test_close_stops_the_workers(system):
    pool = OpenMMPool(system.openmm_system, workers=2, platform="Reference")
    processes = list(pool._processes)
    pool.close()
    assert not any(p.is_alive() for p in processes)


def test_unknown_platform_lists_the_available_ones(system):
    with pytest.raises(ValueError, match="available: .*Reference"):
        OpenMMPool(system.openmm_system, platform="Quantum")
