"""Constrained bonds: fixed in the internal coordinates (not flow dimensions), placed at their
constraint length, with the exact log|det J| of the remaining coordinates."""

import shutil

import pytest
import torch

from boltzflow.coordinates import InternalCoordinates, ZMatrixError, fixman_log_factor
from boltzflow.geometry import bond_lengths
from boltzflow.systems import available_systems, load_system

from ..flows.checks import difference, points_in
from .molecules import full_log_det, random_rigid, rmsd

TETRA = load_system("alanine-tetrapeptide-hbonds")
ALA2 = load_system("alanine-dipeptide")
HYDROGEN_BONDS = [(b.atom1.index, b.atom2.index) for b in ALA2.topology.bonds
                  if "H" in (b.atom1.element.symbol, b.atom2.element.symbol)]


def constrained_dipeptide():
    """Alanine dipeptide with its 12 X–H bonds fixed at 0.1 nm (not their reference lengths)."""
    return InternalCoordinates(ALA2.internal_coordinates().zmatrix, ALA2.positions,
                               fixed_bonds=[(i, j, 0.1) for i, j in HYDROGEN_BONDS])


def frames(system, n, noise, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor(system.positions) + noise * torch.randn(n, system.n_atoms, 3, generator=gen, dtype=torch.float64)
    return random_rigid(x, gen)


@pytest.mark.parametrize("name, atoms, fixed, dim", [("alanine-tetrapeptide-hbonds", 42, 22, 98),
                                                      ("alanine-hexapeptide-hbonds", 62, 32, 148)])
def test_the_benchmark_systems_fix_every_x_h_bond_and_have_the_published_dimension(name, atoms, fixed, dim):
    system = load_system(name)
    hydrogens = {a.index for a in system.topology.atoms if a.element.symbol == "H"}
    pairs = [(i, j) for i, j, _ in system.constrained_bonds]
    assert system.n_atoms == atoms and len(pairs) == fixed == len(hydrogens)
    assert all(len({i, j} & hydrogens) == 1 for i, j in pairs)
    ic = system.internal_coordinates()
    assert ic.dim == 3 * atoms - 6 - fixed == dim
    bonds = {frozenset(map(int, label.split()[1].split("-"))) for label in ic.labels if label.startswith("bond ")}
    assert len(bonds) == ic.n_bonds == atoms - 1 - fixed and not bonds & {frozenset(p) for p in pairs}
    flexible = load_system(name.removesuffix("-hbonds"))
    assert flexible.constrained_bonds == [] and flexible.internal_coordinates().dim == 3 * atoms - 6
    assert "hbonds" not in flexible.name and name in available_systems()


def test_round_trip_keeps_constrained_bonds_at_their_length():
    ic = TETRA.internal_coordinates()
    pairs = torch.tensor([c[:2] for c in TETRA.constrained_bonds])
    lengths = torch.tensor([c[2] for c in TETRA.constrained_bonds], dtype=torch.float64)
    x = frames(TETRA, 8, 0.01, 0)
    assert (bond_lengths(x, pairs) - lengths).abs().max() > 1e-3      # off the constraint surface
    z, log_det_inv = ic.inverse(x)
    x2, log_det = ic(z)
    assert (bond_lengths(x2, pairs) - lengths).abs().max() < 1e-12
    assert difference(ic.inverse(x2)[0], z, ic.domains).max() < 1e-10   # a projection: the rest is kept
    assert (log_det + log_det_inv).abs().max() < 1e-10
    # on the surface, xyz → z → xyz is the identity up to a rigid motion
    x3, _ = ic(ic.inverse(random_rigid(x2, torch.Generator().manual_seed(1)))[0])
    assert max(rmsd(a, b) for a, b in zip(x2.numpy(), x3.numpy())) < 1e-10
    # and z → xyz → z from anywhere in the domains
    z = points_in(ic.domains, 16, torch.float64)
    assert difference(ic.inverse(ic(z)[0])[0], z, ic.domains).max() < 1e-10


@pytest.mark.parametrize("make", [constrained_dipeptide, TETRA.internal_coordinates], ids=["dipeptide", "tetrapeptide"])
def test_log_det_of_the_reduced_chart_against_autograd(make):
    """log|det J| equals the Jacobian of (rigid motion, z, fixed bonds) → xyz at the fixed lengths:
    the 2 log r⁰ of each fixed bond included."""
    ic = make()
    z = points_in(ic.domains, 3, torch.float64)
    _, log_det = ic(z)
    expected = full_log_det(ic, z)
    assert (log_det - expected).abs().max() < 1e-8, (log_det, expected)


def test_float32_places_constrained_bonds_at_their_length(device):
    ic = constrained_dipeptide().to(device=device, dtype=torch.float32)
    x, log_det = ic(points_in(ic.domains, 32, torch.float32, device))
    assert x.dtype == torch.float32 and torch.isfinite(log_det).all()
    pairs = torch.tensor(HYDROGEN_BONDS, device=device)
    assert (bond_lengths(x, pairs) - 0.1).abs().max() < 1e-6


def test_a_constrained_pair_that_is_not_a_zmatrix_bond_is_named(tmp_path):
    zmatrix = ALA2.internal_coordinates().zmatrix
    with pytest.raises(ZMatrixError, match="constrained bond 0-2 is not a bond of the Z-matrix"):
        InternalCoordinates(zmatrix, ALA2.positions, fixed_bonds=[(0, 2, 0.18)])   # H1···H2 of a methyl
    # HAngles constrains H–X–H distances: the system loads, its coordinates say which pair fails
    folder = tmp_path / "hangles"
    shutil.copytree(available_systems()["alanine-dipeptide"], folder)
    toml = folder / "system.toml"
    toml.write_text(toml.read_text().replace('constraints = "none"', 'constraints = "hangles"'))
    with pytest.raises(ZMatrixError, match=r"constrained bond \d+-\d+ is not a bond"):
        load_system(folder).internal_coordinates()


def test_fixman_factor_is_half_the_log_determinant_of_the_constraints_mass_metric():
    """Against Z_m = J M⁻¹ Jᵀ with J the autograd Jacobian of the constraint functions."""
    masses = [TETRA.openmm_system.getParticleMass(i)._value for i in range(TETRA.n_atoms)]
    pairs = [c[:2] for c in TETRA.constrained_bonds]
    x = frames(TETRA, 3, 0.01, 2)
    factor = fixman_log_factor(x, pairs, masses)
    index = torch.tensor(pairs)
    for xi, fi in zip(x, factor):
        jac = torch.autograd.functional.jacobian(lambda v: bond_lengths(v[None], index)[0], xi).reshape(len(pairs), -1)
        metric = jac @ torch.diag(1 / torch.tensor(masses, dtype=torch.float64).repeat_interleave(3)) @ jac.T
        assert abs(0.5 * torch.logdet(metric).item() - fi.item()) < 1e-10
    # it depends on the geometry (H–X–H angles), not on where the molecule is
    moved = random_rigid(x, torch.Generator().manual_seed(3))
    assert factor.std() > 1e-4 and torch.allclose(fixman_log_factor(moved, pairs, masses), factor)
