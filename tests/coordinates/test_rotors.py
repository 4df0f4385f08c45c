"""Rotor sectors: methyl / NH₃⁺ rotors confined to one third of their turn, exactly."""

import copy
import math

import mdtraj
import numpy as np
import pytest
import torch

from boltzflow.coordinates import (InternalCoordinates, ZMatrix, ZMatrixError, build_zmatrix, find_rotors,
                                   has_expected_chirality)
from boltzflow.flows import ProductBase
from boltzflow.geometry import dihedral_angles
from boltzflow.peptides import capped_peptide
from boltzflow.system_builder import parametrise
from boltzflow.systems import load_system

from ..flows.checks import difference, points_in
from .molecules import full_log_det, ideal_values, place_naively, random_rigid, rmsd

ALA2 = load_system("alanine-dipeptide")


def noisy(system, n, noise=0.01, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor(system.positions) + noise * torch.randn(n, system.n_atoms, 3, generator=gen, dtype=torch.float64)
    return random_rigid(x, gen), gen


def test_rotors_are_found_from_bonds_and_force_field_parameters():
    assert find_rotors(ALA2.topology, ALA2.openmm_system) == [(1, (0, 2, 3)), (10, (11, 12, 13)), (18, (19, 20, 21))]
    hexapeptide = load_system("alanine-hexapeptide")
    assert len(find_rotors(hexapeptide.topology, hexapeptide.openmm_system)) == 7
    # NH3+ of lysine; the two caps' methyls
    topology, _, system = parametrise(*capped_peptide("K"), ["amber99sbildn.xml", "amber99_obc.xml"])
    top = mdtraj.Topology.from_openmm(topology)
    names = [top.atom(heavy).name for heavy, _ in find_rotors(top, system)]
    assert names == ["CH3", "NZ", "C"]
    # hydrogens whose charges differ are not equivalent
    changed = copy.deepcopy(ALA2.openmm_system)
    nonbonded = next(f for f in changed.getForces() if type(f).__name__ == "NonbondedForce")
    charge, sigma, epsilon = nonbonded.getParticleParameters(12)
    nonbonded.setParticleParameters(12, charge * 1.01, sigma, epsilon)
    assert [heavy for heavy, _ in find_rotors(ALA2.topology, changed)] == [1, 18]


def fragment():
    """W–Y–CH3 (6 atoms): topology, Z-matrix and an ideal structure (τ₁ = 0.3 rad)."""
    top = mdtraj.Topology()
    residue = top.add_residue("MOL", top.add_chain())
    atoms = [top.add_atom(name, mdtraj.element.get_by_symbol(name[0]), residue)
             for name in ("CW", "CY", "CX", "H1", "H2", "H3")]
    for a, b in [(0, 1), (1, 2), (2, 3), (2, 4), (2, 5)]:
        top.add_bond(atoms[a], atoms[b])
    zmatrix = build_zmatrix(top)
    bonds, angles, dihedrals = ideal_values(top, zmatrix)
    dihedrals[zmatrix.dihedral_index((3, 2, 1, 0))] = 0.3
    return zmatrix, place_naively(zmatrix.rows, 6, bonds, angles, dihedrals)


def fragment_energy(xyz, order):
    """u [batch] (kT) of the fragment, invariant under cyclic relabelling of the hydrogens
    listed in ``order`` (their cyclic order about the CX–CY axis)."""
    tau = dihedral_angles(xyz, torch.tensor([[h, 2, 1, 0] for h in order]))
    torsion = (1.2 * torch.cos(3 * tau - 0.4) + 0.8 * torch.cos(tau + 0.5)).sum(-1)
    gaps = tau.roll(-1, dims=-1) - tau - 2 * math.pi / 3
    return torsion + 60.0 * (1 - torch.cos(gaps)).sum(-1)


def partition_function(ic, order, nodes=64):
    """∫ exp(−u(x(z)) + log|det J|) over the dihedral coordinates of z (bonds and angles at
    their reference), by Gauss–Legendre quadrature over each dihedral's domain."""
    k = ic.n_bonds + ic.n_angles
    x, w = np.polynomial.legendre.leggauss(nodes)
    grids = []
    for domain in ic.domains[k:]:
        half, mid = (domain.high - domain.low) / 2, (domain.high + domain.low) / 2
        grids.append((torch.tensor(mid + half * x), torch.tensor(half * w)))
    points = torch.cartesian_prod(*(g for g, _ in grids))
    weights = torch.cartesian_prod(*(w for _, w in grids)).prod(-1)
    z = torch.zeros(len(points), ic.dim, dtype=torch.float64)
    z[:, k:] = points
    xyz, log_det = ic(z)
    return (weights * torch.exp(log_det - fragment_energy(xyz, order))).sum().item()


def test_the_sector_chart_integrates_to_a_third_of_the_full_chart():
    zmatrix, positions = fragment()
    full = InternalCoordinates(zmatrix, positions)
    sector = InternalCoordinates(zmatrix, positions, rotors=[(2, (3, 4, 5))])
    assert sector.rotors == [(2, (3, 4, 5))] and sector.log_sectors == pytest.approx(math.log(3))
    assert [d.kind for d in sector.domains] == [d.kind for d in full.domains]
    order = sector.rotors[0][1]
    ratio = partition_function(sector, order) / partition_function(full, order)
    assert ratio == pytest.approx(1 / 3, rel=1e-6)


def test_round_trip_and_log_det_against_autograd():
    ic = ALA2.internal_coordinates(rotor_sectors=True)
    assert [label for label in ic.labels if label.startswith("rotor")] == ["rotor 0-1-4-6", "rotor 19-18-16-14",
                                                                          "rotor 11-10-8-6"]
    z = points_in(ic.domains, 4, torch.float64)
    x, log_det = ic(z)
    z2, log_det_inv = ic.inverse(x)
    assert difference(z2, z, ic.domains).max() < 1e-10 and (log_det + log_det_inv).abs().max() < 1e-10
    assert (log_det - full_log_det(ic, z)).abs().max() < 1e-8
    # the same structure in the full chart: the log-determinants differ by log 3 per rotor
    plain = ALA2.internal_coordinates()
    assert (plain.inverse(x)[1] - log_det_inv + 3 * math.log(3)).abs().max() < 1e-10


@pytest.mark.parametrize("name", ["alanine-tetrapeptide", "alanine-tetrapeptide-hbonds"])
def test_cyclic_relabellings_of_a_structure_map_to_one_point_of_the_same_energy(name):
    system = load_system(name)
    ic = system.internal_coordinates(rotor_sectors=True)
    x, gen = noisy(system, 16)
    x = random_rigid(ic(ic.inverse(x)[0])[0], gen)     # X–H bonds at their constraint lengths (-hbonds)
    permuted = x.clone()
    for heavy, hydrogens in ic.rotors:
        for b in range(len(x)):   # a random cyclic relabelling per rotor and structure
            shift = int(torch.randint(3, (1,), generator=gen))
            permuted[b, list(hydrogens)] = x[b, list(np.roll(hydrogens, shift))]
    assert not torch.equal(permuted, x)
    z, _ = ic.inverse(permuted)
    assert difference(ic.inverse(x)[0], z, ic.domains).max() < 1e-10
    y, _ = ic(z)
    energy = system.energy("torch").double()
    assert torch.allclose(energy(y), energy(permuted), rtol=1e-10)
    relabelled = ic.sectors.relabel(permuted)     # each rotor's hydrogens relabelled into the sector
    assert max(rmsd(a, b) for a, b in zip(relabelled.numpy(), y.numpy())) < 1e-10


def test_rotor_sectors_off_give_the_plain_torsions():
    plain = ALA2.internal_coordinates()
    assert plain.rotors == [] and plain.log_sectors == 0
    x, _ = noisy(ALA2, 4)
    direct = InternalCoordinates(plain.zmatrix, ALA2.positions)
    assert torch.equal(plain.inverse(x)[0], direct.inverse(x)[0])


def test_a_zmatrix_that_does_not_place_a_rotor_as_one():
    rows = [r if r[0] != 3 else (3, 1, 4, 6) for r in ALA2.internal_coordinates().zmatrix.rows]   # H3 against N
    zmatrix = ZMatrix(22, tuple(rows))
    with pytest.raises(ZMatrixError, match=r"rotor at atom 1 \(hydrogens \[0, 2, 3\]\): the zmatrix does not place"):
        InternalCoordinates(zmatrix, ALA2.positions, rotors=[(1, (0, 2, 3))])
    # the system's automatic choice leaves that rotor as it is
    chosen = ALA2.internal_coordinates(zmatrix=zmatrix, rotor_sectors=True)
    assert [heavy for heavy, _ in chosen.rotors] == [10, 18]


@pytest.mark.parametrize("name", ["alanine-dipeptide", "alanine-hexapeptide-hbonds"])
def test_every_point_of_the_sector_chart_keeps_the_declared_chirality(name):
    system = load_system(name)
    ic = system.internal_coordinates(rotor_sectors=True)
    torch.manual_seed(0)
    z = ProductBase(ic.domains).sample(20_000).double()
    assert has_expected_chirality(ic(z)[0], system.chiral_centers).all()
