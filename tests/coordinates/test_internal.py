"""InternalCoordinates: exact round trips, the physical log|det J|, domains, wrapping, degenerate
geometry and shapes, for alanine dipeptide and a capped phenylalanine (ring, branches)."""

import math

import mdtraj
import numpy as np
import pytest
import torch

from boltzflow.coordinates import InternalCoordinates, build_zmatrix, has_expected_chirality
from boltzflow.flows import Circle, Flow, Interval, ProductBase, Real, spline_flow, wrap
from boltzflow.domains import Support
from boltzflow.systems import load_system

from ..flows.checks import difference, points_in
from .molecules import capped_phenylalanine, full_log_det, place_naively, random_rigid, rmsd

ALA2 = load_system("alanine-dipeptide")
PHI, PSI = ALA2.dihedrals["phi"], ALA2.dihedrals["psi"]
MIXED_ATOMS = (6, 8, 9, 10, 14)   # N, CA, HA, CB, C: the boltzgen / FAB layout


def md_like_frames(n, noise=0.005, seed=0):
    """Structures [n, 22, 3] (float64): the reference with Gaussian noise and random rigid motions."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor(ALA2.positions) + noise * torch.randn(n, 22, 3, generator=gen, dtype=torch.float64)
    return random_rigid(x, gen)


def phenylalanine_ic():
    top, zmatrix, positions = capped_phenylalanine()
    return InternalCoordinates(zmatrix, positions)


@pytest.fixture(params=["internal", "mixed"])
def ic(request):
    if request.param == "internal":
        return ALA2.internal_coordinates()
    return ALA2.internal_coordinates(reference=md_like_frames(200), cartesian_atoms=MIXED_ATOMS)


@pytest.mark.parametrize("name", ["alanine-dipeptide", "alanine-tetrapeptide", "alanine-hexapeptide"])
def test_every_point_of_the_domains_has_the_declared_chirality(name):
    """Branch dihedrals are intervals: no point of the flow's domains is a mirror image."""
    system = load_system(name)
    ic = system.internal_coordinates()
    torch.manual_seed(0)
    z = ProductBase(ic.domains).sample(20_000).double()
    assert has_expected_chirality(ic(z)[0], system.chiral_centers).all()
    n_dihedrals = len(ic.zmatrix.dihedrals)
    z = ProductBase(ic.domains[:-n_dihedrals] + (Circle(),) * n_dihedrals).sample(20_000).double()   # all circles
    assert has_expected_chirality(ic(z)[0], system.chiral_centers).float().mean() < 0.8


def test_layout_and_domains_of_alanine_dipeptide():
    ic = ALA2.internal_coordinates()
    kinds = [d.kind for d in ic.domains]
    bonded = {frozenset((a.index, b.index)) for a, b in ALA2.topology.bonds}
    branch = [frozenset((row[1], row[3])) in bonded for row in ic.zmatrix.dihedrals]
    assert ic.dim == 60 and kinds == ["interval"] * 41 + ["interval" if b else "circle" for b in branch]
    assert kinds.count("circle") == 7   # φ, ψ, the two ω, and the three methyl rotors
    assert ic.labels[ic.dihedral_index(PHI)] == "dihedral 14-8-6-4"
    # the reference structure is the centre of every coordinate and lies inside the domains
    z, _ = ic.inverse(torch.tensor(ALA2.positions)[None])
    assert z.abs().max() < 1e-12 and Support(ic.domains).contains(z).all()
    # bonds and angles: physical windows ±8 default scales, angles inside (0, π)
    bonds, angles, _ = ic.physical(torch.tensor([[d.low for d in ic.domains[:41]] + [0.0] * 19,
                                                 [d.high for d in ic.domains[:41]] + [0.0] * 19]))
    reference_bonds, reference_angles, _ = ic.physical(z)
    assert torch.allclose(bonds[0] - reference_bonds[0], torch.full((21,), -0.032, dtype=torch.float64))
    assert torch.allclose(bonds[1] - reference_bonds[0], torch.full((21,), 0.032, dtype=torch.float64))
    assert (angles[0] > 0).all() and (angles[1] < math.pi).all()
    assert torch.allclose((angles - reference_angles).abs(), torch.full((2, 20), 0.8, dtype=torch.float64))


def test_mixed_layout_appends_whitened_cartesian_dimensions():
    ic = ALA2.internal_coordinates(cartesian_atoms=MIXED_ATOMS)
    assert ic.dim == 60 and ic.domains[-9:] == (Real(),) * 9
    bonded = {frozenset((a.index, b.index)) for a, b in ALA2.topology.bonds}
    dihedrals = ["interval" if frozenset((row[1], row[3])) in bonded else "circle" for row in ic.zmatrix.dihedrals]
    assert [d.kind for d in ic.domains[:51]] == ["interval"] * 34 + dihedrals


def test_round_trip_from_internal_coordinates(ic, device, dtype):
    ic = ic.to(device=device, dtype=dtype)
    z = points_in(ic.domains, 64, dtype, device, real_scale=1.0)
    x, log_det = ic(z)
    z2, log_det_inv = ic.inverse(x)
    assert x.shape == (64, 22, 3) and x.dtype == dtype and x.device.type == device.type
    assert torch.isfinite(x).all() and torch.isfinite(log_det).all()
    if dtype == torch.float64:
        assert difference(z2, z, ic.domains).max() < 1e-10
        assert (log_det + log_det_inv).abs().max() < 1e-10
    else:
        # float32: compare in nm and radians (normalised bonds magnify rounding by 1/scale)
        for a, b in zip(ic.physical(z), ic.physical(z2)):
            assert wrap(a - b).abs().max() < 1e-5
        assert torch.allclose(z2[:, ic.n_internal:], z[:, ic.n_internal:], rtol=0, atol=1e-4)
        assert (log_det + log_det_inv).abs().max() < 1e-3


def test_round_trip_from_positions_up_to_a_rigid_motion(ic, device, dtype):
    ic = ic.to(device=device, dtype=dtype)
    x = md_like_frames(16, noise=0.01, seed=1).to(device=device, dtype=dtype)
    x2, _ = ic(ic.inverse(x)[0])
    worst = max(rmsd(a, b) for a, b in zip(x.double().cpu().numpy(), x2.double().cpu().numpy()))
    assert worst < (1e-5 if dtype == torch.float32 else 1e-10)


def test_forward_places_atoms_like_a_naive_one_atom_at_a_time_builder():
    top, zmatrix, positions = capped_phenylalanine()
    ic = InternalCoordinates(zmatrix, positions)
    z = points_in(ic.domains, 4, torch.float64)
    x, _ = ic(z)
    for zi, xi in zip(z, x):
        bonds, angles, dihedrals = (v.numpy() for v in ic.physical(zi[None]))
        expected = place_naively(zmatrix.rows, 32, bonds[0], angles[0], dihedrals[0])
        assert np.abs(xi.numpy() - expected).max() < 1e-12   # same frame: no superposition
    # and the coordinates are those mdtraj measures
    trajectory = mdtraj.Trajectory(x.numpy(), top)
    measured = mdtraj.compute_dihedrals(trajectory, np.array([r[::-1] for r in zmatrix.dihedrals]))
    assert np.abs(np.angle(np.exp(1j * (measured - ic.physical(z)[2].numpy())))).max() < 1e-5


MOLECULES = {
    "alanine-dipeptide": lambda: ALA2.internal_coordinates(),
    # the third seed atom bonded to the first (CA, N, then CB on CA)
    "alanine-dipeptide-from-CA": lambda: ALA2.internal_coordinates(zmatrix=build_zmatrix(ALA2.topology, backbone=[8, 6])),
    "alanine-dipeptide-mixed": lambda: ALA2.internal_coordinates(md_like_frames(200), MIXED_ATOMS),
    "capped-phenylalanine": phenylalanine_ic,
    "alanine-tetrapeptide": lambda: load_system("alanine-tetrapeptide").internal_coordinates(),
    "alanine-hexapeptide": lambda: load_system("alanine-hexapeptide").internal_coordinates(),
}


@pytest.mark.parametrize("molecule", MOLECULES)
def test_log_det_is_the_jacobian_of_rigid_motion_and_internal_coordinates(molecule):
    ic = MOLECULES[molecule]()
    z = points_in(ic.domains, 4, torch.float64, real_scale=1.0)
    x, log_det = ic(z)
    z2, _ = ic.inverse(x)
    assert difference(z2, z, ic.domains).max() < 1e-10
    expected = full_log_det(ic, z)
    assert (log_det - expected).abs().max() < 1e-8, (log_det, expected)
    # conformation-dependent: the seed atoms' r² and r² sin θ terms are part of it
    assert (expected - expected.mean()).abs().max() > 0.1


def test_gradients_flow_through_both_directions():
    ic = ALA2.internal_coordinates(md_like_frames(200), MIXED_ATOMS)
    z = points_in(ic.domains, 8, torch.float64, real_scale=1.0).requires_grad_()
    x, log_det = ic(z)
    (x.square().sum() + log_det.sum()).backward()
    assert torch.isfinite(z.grad).all() and (z.grad != 0).all()
    y = x.detach().requires_grad_()
    z2, log_det_inv = ic.inverse(y)
    (z2.square().sum() + log_det_inv.sum()).backward()
    assert torch.isfinite(y.grad).all()


def test_reference_from_data_frames_sets_means_scales_and_contains_the_data():
    frames = md_like_frames(300, noise=0.004, seed=3)
    ic = ALA2.internal_coordinates(reference=frames)
    z, _ = ic.inverse(frames)
    bonds_and_angles = z[:, :41].numpy()
    assert np.abs(bonds_and_angles.mean(0)).max() < 1e-10
    assert np.abs(bonds_and_angles.std(0, ddof=1) - 1).max() < 1e-10
    dihedrals = z[:, 41:].numpy()
    assert np.abs(np.arctan2(np.sin(dihedrals).mean(0), np.cos(dihedrals).mean(0))).max() < 1e-10
    assert Support(ic.domains).contains(z).all()
    # the measured dihedrals are φ and ψ as mdtraj computes them, rotated by their reference
    measured = mdtraj.compute_dihedrals(mdtraj.Trajectory(frames.numpy(), ALA2.topology), np.array([PHI, PSI]))
    physical = ic.physical(z)[2].numpy()
    rows = [ic.dihedral_index(PHI) - 41, ic.dihedral_index(PSI) - 41]
    assert np.abs(np.angle(np.exp(1j * (physical[:, rows] - measured)))).max() < 1e-5


def test_whitened_cartesian_block_has_unit_covariance_on_its_data():
    frames = md_like_frames(200, noise=0.01, seed=4)
    ic = ALA2.internal_coordinates(reference=frames, cartesian_atoms=MIXED_ATOMS)
    block = ic.inverse(frames)[0][:, -9:]
    assert torch.allclose(torch.cov(block.T), torch.eye(9, dtype=torch.float64), atol=1e-8)


def test_points_outside_the_intervals_map_finitely_and_have_no_density():
    ic = ALA2.internal_coordinates()
    x = torch.tensor(ALA2.positions)[None].repeat(2, 1, 1)
    x[1, 0] = x[1, 1] + 3.0 * (x[1, 0] - x[1, 1])          # an H1-CH3 bond of 0.33 nm
    z, log_det = ic.inverse(x)
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    inside = Support(ic.domains).contains(z)
    assert inside.tolist() == [True, False]
    flow = spline_flow(ic.domains, layers=2, hidden=(8,)).double()
    log_q = flow.log_prob(z)
    assert torch.isfinite(log_q[0]) and log_q[1] == -math.inf
    x2, _ = ic(flow.sample(16))
    assert torch.isfinite(x2).all()


def test_dihedrals_wrap_across_plus_minus_pi():
    ic = ALA2.internal_coordinates()
    k = ic.dihedral_index(PSI)
    z = torch.zeros(4, 60, dtype=torch.float64)
    z[:, k] = torch.tensor([math.pi - 1e-7, -math.pi + 1e-7, -math.pi, 0.3])
    x, _ = ic(z)
    z2, _ = ic.inverse(x)
    assert ((z2[:, k] >= -math.pi) & (z2[:, k] < math.pi)).all()
    assert difference(z2, z, ic.domains).max() < 1e-9
    # crossing ±π moves the atoms by a small step, not by a jump
    assert (x[0] - x[1]).norm(dim=-1).max() < 1e-6
    # periodic: z and z + 2π give the same structure
    shifted, _ = ic(z + 2 * math.pi * (torch.arange(60) == k).double())
    assert (shifted - x).abs().max() < 1e-12


def test_collinear_references_in_the_reference_structure_are_a_clear_error():
    x = ALA2.positions.copy()
    x[6] = x[4] + (x[4] - x[1]) * 0.1 / np.linalg.norm(x[4] - x[1])   # N on the line CH3-C
    with pytest.raises(ValueError, match=r"collinear"):
        ALA2.internal_coordinates(reference=x)
    with pytest.raises(ValueError, match="collinear"):
        ALA2.internal_coordinates(cartesian_atoms=(1, 4, 6), reference=x)


def test_collinear_atoms_at_run_time_give_finite_values_never_nan():
    ic = ALA2.internal_coordinates()
    # forward: angle 6-4-1 (a seed) of exactly π puts the next frame on a line
    z = torch.zeros(2, 60, dtype=torch.float64, requires_grad=True)
    angle = ic.labels.index("angle 6-4-1")
    shift = torch.zeros(2, 60, dtype=torch.float64)
    reference_angle = ic.physical(z.detach())[1][0, angle - ic.n_bonds]
    shift[:, angle] = (math.pi - reference_angle) / ic.normalization.angle_scale[angle - ic.n_bonds]
    x, log_det = ic(z + shift)
    assert torch.isfinite(x).all() and not torch.isnan(log_det).any()
    x.sum().backward()
    assert torch.isfinite(z.grad).all()
    # inverse: collinear and coincident atoms
    y = torch.tensor(ALA2.positions)[None].repeat(2, 1, 1)
    y[0, 6] = y[0, 4] + (y[0, 4] - y[0, 1])
    y[1, 8] = y[1, 6]
    z2, log_det_inv = ic.inverse(y)
    assert torch.isfinite(z2).all() and not torch.isnan(log_det_inv).any()


def test_wrong_shapes_name_the_expected_shape():
    ic = ALA2.internal_coordinates()
    with pytest.raises(ValueError, match=r"\[batch, 60\]"):
        ic(torch.zeros(3, 59, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[batch, 60\]"):
        ic(torch.zeros(60, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[batch, 22, 3\]"):
        ic.inverse(torch.zeros(3, 21, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[22, 3\] or \[frames, 22, 3\]"):
        ALA2.internal_coordinates(reference=np.zeros((21, 3)))


def test_cannot_be_composed_into_a_flow():
    ic = ALA2.internal_coordinates()
    with pytest.raises(TypeError, match=r"\[batch, n_atoms, 3\]"):
        Flow(ProductBase(ic.domains), [ic])
    assert isinstance(ic.domains[0], Interval) and isinstance(ic.domains[ic.dihedral_index(PHI)], Circle)


def test_automatic_zmatrix_of_a_topology_and_of_the_system_agree():
    assert ALA2.internal_coordinates().zmatrix == build_zmatrix(ALA2.topology)
