"""The torch force field against OpenMM's Reference platform on the shipped systems."""

import numpy as np
import openmm
import pytest
import torch

from boltzflow.energy.torch_forcefield import TorchForceField
from boltzflow.systems import available_systems, load_system

from .reference import conformations, hot_md_frames, reference_energies_forces

SYSTEMS = list(available_systems())


@pytest.fixture(scope="module", params=SYSTEMS)
def case(request):
    system = load_system(request.param)
    frames = hot_md_frames(system.openmm_system, system.positions, n_frames=30)
    xyz, is_clash = conformations(system.positions, frames=frames)
    energies, forces = reference_energies_forces(system.openmm_system, xyz)
    return system, xyz, is_clash, energies, forces


def test_float64_energies_and_forces_match_openmm(case):
    system, xyz, is_clash, ref_e, ref_f = case
    ff = TorchForceField(system.openmm_system).double()
    x = torch.tensor(xyz, requires_grad=True)
    e = ff(x)
    f = -torch.autograd.grad(e.sum(), x)[0]
    assert np.all(np.abs(e.detach().numpy() - ref_e) <= 1e-6 * np.maximum(np.abs(ref_e), 1.0))
    error = np.abs(f.numpy() - ref_f).max(axis=(1, 2))
    assert error[~is_clash].max() < 1e-4
    # clash forces reach 1e12 kJ/mol/nm, where one float64 ulp is already 1e-4: compare
    # those to round-off of their own size
    assert np.all(error[is_clash] < 1e-4 + 1e-13 * np.abs(ref_f[is_clash]).max(axis=(1, 2)))


def test_float32_energies_match_openmm(case, device):
    system, xyz, is_clash, ref_e, _ = case
    ff = TorchForceField(system.openmm_system).to(device, torch.float32)
    e = ff(torch.tensor(xyz[~is_clash], dtype=torch.float32, device=device)).double().cpu().numpy()
    assert np.abs(e - ref_e[~is_clash]).max() < 1e-2


def test_unsupported_forces_and_options_are_named():
    system = openmm.System()
    for _ in range(2):
        system.addParticle(1.0)
    system.addForce(openmm.CustomExternalForce("x^2"))
    with pytest.raises(NotImplementedError, match="CustomExternalForce"):
        TorchForceField(system)
    system = openmm.System()
    system.addParticle(1.0)
    nb = openmm.NonbondedForce()
    nb.addParticle(0.0, 0.3, 0.1)
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffNonPeriodic)
    system.addForce(nb)
    with pytest.raises(NotImplementedError, match="NoCutoff"):
        TorchForceField(system)


def test_wrong_shape_is_a_value_error():
    ff = TorchForceField(load_system("alanine-dipeptide-vacuum").openmm_system)
    with pytest.raises(ValueError, match=r"\[batch, 22, 3\]"):
        ff(torch.zeros(4, 21, 3))


def test_matches_the_literature_alanine_dipeptide():
    """Our alanine-dipeptide equals openmmtools' AlanineDipeptideImplicit (Amber ff96 prmtop,
    mbondi2, OBC1), the FAB / TA-BG benchmark system, on the same coordinates."""
    testsystems = pytest.importorskip("openmmtools.testsystems")
    literature = testsystems.AlanineDipeptideImplicit(constraints=None)
    names = [(a.residue.name, a.name) for a in literature.topology.atoms()]
    ours = load_system("alanine-dipeptide")
    assert [a.residue.name for a in ours.topology.atoms] == [r for r, _ in names]
    xyz, is_clash = conformations(ours.positions, n_thermal=20, n_clash=0, seed=1)
    e_lit, _ = reference_energies_forces(literature.system, xyz)
    e_ours, _ = reference_energies_forces(ours.openmm_system, xyz)
    assert np.abs(e_lit - e_ours).max() < 0.05


def test_compiled_energy_matches_openmm(tmp_path, monkeypatch):
    """``compile=True`` (torch.compile) changes speed, not results. Compiled in a cache folder of
    its own: inductor's shared on-disk cache has handed back kernels built under another
    ATEN_CPU_CAPABILITY, which gave every energy a constant offset."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    system = load_system("alanine-dipeptide")
    xyz, _ = conformations(system.positions, n_thermal=15, n_clash=0, seed=3)
    ref_e, ref_f = reference_energies_forces(system.openmm_system, xyz)
    energy = system.energy("torch", compile=True).double()
    x = torch.tensor(xyz, requires_grad=True)
    u = energy(x)
    f = -torch.autograd.grad(u.sum(), x)[0] * system.kT
    np.testing.assert_allclose(u.detach().numpy() * system.kT, ref_e, rtol=1e-6)
    assert np.abs(f.numpy() - ref_f).max() < 1e-4


@pytest.fixture(scope="module")
def twenty_residues():
    """Ace-(all 20 amino acids)-Nme in the tetrapeptide's force field (amber99sbildn + OBC2),
    as built, not minimised: 300+ atoms, every residue type's charges and radii."""
    from boltzflow.peptides import ONE_LETTER
    from boltzflow.system_builder import capped_peptide, parametrise

    _, positions, system = parametrise(*capped_peptide("".join(sorted(ONE_LETTER))),
                                       ["amber99sbildn.xml", "amber99_obc.xml"])
    return system, np.asarray(positions)


def test_a_twenty_residue_peptide_matches_openmm(twenty_residues):
    system, positions = twenty_residues
    xyz, _ = conformations(positions, n_thermal=4, n_clash=1, seed=5)
    ref_e, ref_f = reference_energies_forces(system, xyz)
    ff = TorchForceField(system)
    x = torch.tensor(xyz, requires_grad=True)
    e = ff(x)
    f = -torch.autograd.grad(e.sum(), x)[0]
    assert np.all(np.abs(e.detach().numpy() - ref_e) <= 1e-6 * np.maximum(np.abs(ref_e), 1.0))
    # float64 round-off of forces up to |f|max, summed over 300+ atoms
    assert np.all(np.abs(f.numpy() - ref_f).max(axis=(1, 2)) < 1e-4 + 1e-12 * np.abs(ref_f).max(axis=(1, 2)))


def test_chunks_change_nothing(case):
    """Energies and forces do not depend on how the batch is cut into chunks."""
    system, xyz, *_ = case
    results = []
    for chunk in (1, 7, len(xyz)):
        ff = TorchForceField(system.openmm_system, chunk=chunk)
        x = torch.tensor(xyz, requires_grad=True)
        e = ff(x)
        results.append((e.detach(), torch.autograd.grad(e.sum(), x)[0]))
        with torch.no_grad():
            torch.testing.assert_close(ff(x), e.detach(), rtol=1e-12, atol=0)
    for e, g in results[1:]:
        torch.testing.assert_close(e, results[0][0], rtol=1e-12, atol=0)
        torch.testing.assert_close(g, results[0][1], rtol=1e-10, atol=1e-8)


def test_second_derivatives_match_finite_differences_of_the_gradient():
    """Hessian-vector products through create_graph (the differentiable MCMC moves of SNF
    training take them) equal central differences of the gradient."""
    system = load_system("alanine-dipeptide")
    ff = TorchForceField(system.openmm_system, chunk=2)
    xyz, _ = conformations(system.positions, n_thermal=5, n_clash=0, seed=2)
    x = torch.tensor(xyz, requires_grad=True)
    v = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (g,) = torch.autograd.grad(ff(x).sum(), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)

    def gradient(p):
        p = p.detach().requires_grad_()
        return torch.autograd.grad(ff(p).sum(), p)[0]

    step = 1e-6
    fd = (gradient(x + step * v) - gradient(x - step * v)) / (2 * step)
    # |Hv| ~ 2e6 kJ/mol/nm²: truncation O(step²) is ~3e-9 of it here (0.45 at step 1e-5, 0.0045 at
    # 1e-6), round-off eps·|g|/step ~ 1e-5 kJ/mol/nm² (|g| ~ 3e4); a missing term is O(1) of it
    assert (hv - fd).abs().max() < 1e-7 * fd.abs().max()


def test_bad_chunk_is_refused():
    with pytest.raises(ValueError, match="chunk"):
        TorchForceField(load_system("alanine-dipeptide-vacuum").openmm_system, chunk=0)


def test_analytic_pair_derivatives_match_autograd(case):
    """Each pair term's ∂E/∂r² (written out by hand, GB through the Born radii) against autograd
    of the same energy, clashes and buried atoms included."""
    from boltzflow.energy.terms import pair_squared_distances

    system, xyz, *_ = case
    r2 = pair_squared_distances(torch.tensor(xyz)).requires_grad_()
    for term in TorchForceField(system.openmm_system).pairs:
        energy, by_r2 = term.energy_and_gradient(r2.detach())
        (expected,) = torch.autograd.grad(term(r2).sum(), r2)
        torch.testing.assert_close(energy, term(r2).detach(), rtol=1e-13, atol=0)
        # float64 round-off relative to each conformation's largest derivative
        scale = expected.abs().amax((1, 2), keepdim=True)
        assert ((by_r2 - expected).abs() / scale).max() < 1e-12


def test_an_atom_buried_in_a_large_scaled_sphere_matches_openmm():
    """OpenMM's GBSAOBCForce corrects the HCT integral of an atom inside another atom's scaled
    sphere (or_i < sr_j − r); peptides near their minimum never reach that branch, so four
    atoms with one 0.5 nm radius do, checked against OpenMM Reference and autograd."""
    from boltzflow.energy.terms import pair_squared_distances

    system = openmm.System()
    gb = openmm.GBSAOBCForce()
    for charge, radius, scale in [(0.5, 0.5, 1.0), (-0.3, 0.12, 0.8), (0.2, 0.15, 0.85), (-0.4, 0.17, 0.72)]:
        system.addParticle(12.0)
        gb.addParticle(charge, radius, scale)
    system.addForce(gb)
    rng = np.random.default_rng(7)
    xyz = rng.uniform(0.0, 0.3, size=(20, 4, 3))
    ref_e, ref_f = reference_energies_forces(system, xyz)
    ff = TorchForceField(system)
    r = torch.tensor(xyz)
    term = ff.pairs[0]
    dist = pair_squared_distances(r).sqrt()
    assert ((term.or_receiver < term.sr_sender - dist) & (term.others > 0)).any(-1).any(-1).all()
    x = r.clone().requires_grad_()
    e = ff(x)
    f = -torch.autograd.grad(e.sum(), x)[0]
    assert np.all(np.abs(e.detach().numpy() - ref_e) <= 1e-6 * np.maximum(np.abs(ref_e), 1.0))
    assert np.abs(f.numpy() - ref_f).max() < 1e-4 + 1e-12 * np.abs(ref_f).max()
    r2 = pair_squared_distances(r).requires_grad_()
    (expected,) = torch.autograd.grad(term(r2).sum(), r2)
    assert ((term.energy_and_gradient(r2.detach())[1] - expected).abs().max() < 1e-12 * expected.abs().max())
