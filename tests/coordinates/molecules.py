"""Test molecules and independent references: a capped phenylalanine built by hand, a naive
one-atom-at-a-time placement, and the full rigid-body + internal Jacobian."""

import math

import mdtraj
import numpy as np
import torch

# residue name → atoms (name, element) and bonds within the residue (by name)
RESIDUES = {
    "ACE": ([("H1", "H"), ("CH3", "C"), ("H2", "H"), ("H3", "H"), ("C", "C"), ("O", "O")],
            [("H1", "CH3"), ("CH3", "H2"), ("CH3", "H3"), ("CH3", "C"), ("C", "O")]),
    "PHE": ([("N", "N"), ("H", "H"), ("CA", "C"), ("HA", "H"), ("CB", "C"), ("HB2", "H"), ("HB3", "H"),
             ("CG", "C"), ("CD1", "C"), ("HD1", "H"), ("CE1", "C"), ("HE1", "H"), ("CZ", "C"), ("HZ", "H"),
             ("CE2", "C"), ("HE2", "H"), ("CD2", "C"), ("HD2", "H"), ("C", "C"), ("O", "O")],
            [("N", "H"), ("N", "CA"), ("CA", "HA"), ("CA", "CB"), ("CB", "HB2"), ("CB", "HB3"), ("CB", "CG"),
             ("CG", "CD1"), ("CD1", "HD1"), ("CD1", "CE1"), ("CE1", "HE1"), ("CE1", "CZ"), ("CZ", "HZ"),
             ("CZ", "CE2"), ("CE2", "HE2"), ("CE2", "CD2"), ("CD2", "HD2"), ("CD2", "CG"), ("CA", "C"),
             ("C", "O")]),
    "NME": ([("N", "N"), ("H", "H"), ("C", "C"), ("H1", "H"), ("H2", "H"), ("H3", "H")],
            [("N", "H"), ("N", "C"), ("C", "H1"), ("C", "H2"), ("C", "H3")]),
}
BOND_LENGTH = {"CH": 0.109, "CC": 0.140, "CN": 0.140, "CO": 0.123, "HN": 0.101}
PHE_RING = ("CG", "CD1", "CE1", "CZ", "CE2", "CD2")


def capped_peptide(residue="PHE"):
    """mdtraj topology of ACE-<residue>-NME with its bonds (peptide bonds included)."""
    top = mdtraj.Topology()
    chain = top.add_chain()
    atoms = {}
    for k, name in enumerate(["ACE", residue, "NME"]):
        res = top.add_residue(name, chain)
        names, bonds = RESIDUES[name]
        for atom, element in names:
            atoms[k, atom] = top.add_atom(atom, mdtraj.element.get_by_symbol(element), res)
        for a, b in bonds:
            top.add_bond(atoms[k, a], atoms[k, b])
    top.add_bond(atoms[0, "C"], atoms[1, "N"])
    top.add_bond(atoms[1, "C"], atoms[2, "N"])
    return top


def _rotate(v, axis, angle):
    """Rodrigues: v rotated by ``angle`` about unit ``axis``."""
    return (v * math.cos(angle) + np.cross(axis, v) * math.sin(angle)
            + axis * np.dot(axis, v) * (1 - math.cos(angle)))


def _unit(v):
    return v / np.linalg.norm(v)


def place_naively(rows, n_atoms, bonds, angles, dihedrals):
    """Positions [n_atoms, 3] from internal-layout Z-matrix rows, one atom at a time (numpy,
    Rodrigues rotations instead of NeRF frames); values in coordinate order (nm, rad)."""
    x = np.zeros((n_atoms, 3))
    bonds, angles, dihedrals = iter(bonds), iter(angles), iter(dihedrals)
    for k, (atom, b, a, d) in enumerate(rows[1:], start=1):
        r = next(bonds)
        if k == 1:
            x[atom] = x[b] + [r, 0.0, 0.0]
            continue
        theta = next(angles)
        back = _unit(x[a] - x[b])
        if k == 2:
            side = np.array([0.0, 1.0, 0.0])
        else:
            # the direction of d seen across the a→b axis, turned by the dihedral about that axis
            axis = _unit(x[b] - x[a])
            side = _rotate(_unit((x[d] - x[a]) - np.dot(x[d] - x[a], axis) * axis), axis, next(dihedrals))
        x[atom] = x[b] + r * (math.cos(theta) * back + math.sin(theta) * side)
    return x


def ideal_values(topology, zmatrix, ring=()):
    """Plausible bonds (nm), angles and dihedrals (rad) for a Z-matrix: angles 115° (120° at
    the atoms of the planar ``ring``, and torsions 0° within it), siblings 120° or 180° apart (by the valence of
    their bond reference), other torsions anti (180°)."""
    elements = [a.element.symbol for a in topology.atoms]
    degree = np.zeros(topology.n_atoms, dtype=int)
    for bond in topology.bonds:
        degree[bond.atom1.index] += 1
        degree[bond.atom2.index] += 1
    bonds = [BOND_LENGTH.get("".join(sorted(elements[i] + elements[j])), 0.15) for i, j in zmatrix.bonds]
    ring = set(ring)
    angles = [math.radians(120.0 if t[1] in ring else 115.0) for t in zmatrix.angles]
    dihedrals, seen = [], {}
    for atom, b, a, d in zmatrix.dihedrals:
        if ring.issuperset((atom, b, a, d)):
            dihedrals.append(0.0)
        elif any(r[0] == d and r[1:3] == (b, a) for r in zmatrix.rows):
            k = seen[b, a, d] = seen.get((b, a, d), -1) + 1
            dihedrals.append(math.pi if degree[b] == 3 else (1 if k == 0 else -1) * 2 * math.pi / 3)
        else:
            dihedrals.append(math.pi)
    return np.array(bonds), np.array(angles), np.array(dihedrals)


def full_log_det(ic, z):
    """log|det| [batch] of (translation, rotation vector at identity, z, fixed bond lengths) →
    positions, with exact rigid-body columns and autograd for the z and fixed-bond columns
    (3N × 3N, float64; the fixed bonds' columns at their fixed lengths, in nm)."""
    from torch.func import functional_call

    dim = z.shape[1]

    def positions(v):
        return functional_call(ic, {"fixed_length": v[dim:]}, (v[None, :dim],))[0][0].flatten()

    out = []
    for zi in z:
        x = ic(zi[None])[0][0]
        jac = torch.autograd.functional.jacobian(positions, torch.cat([zi, ic.fixed_length.to(zi)]), vectorize=True)
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        translations = eye.repeat(len(x), 1)
        rotations = torch.stack([torch.linalg.cross(eye[k].expand_as(x), x, dim=-1).flatten() for k in range(3)], -1)
        out.append(torch.linalg.slogdet(torch.cat([translations, rotations, jac], dim=1))[1])
    return torch.stack(out)


def random_rigid(x, generator):
    """x [B, N, 3] moved by random rotations and translations."""
    q, _ = torch.linalg.qr(torch.randn(len(x), 3, 3, generator=generator, dtype=torch.float64).to(x))
    q = q * torch.sign(torch.linalg.det(q))[:, None, None]
    return x @ q.transpose(-1, -2) + torch.randn(len(x), 1, 3, generator=generator, dtype=torch.float64).to(x)


def capped_phenylalanine():
    """ACE-PHE-NME: topology, its automatic Z-matrix and a clash-free structure [32, 3] (nm)
    with a closed planar ring (φ −60°, ψ −40°, χ1 60°), placed by ``place_naively``."""
    from boltzflow.coordinates import build_zmatrix

    top = capped_peptide("PHE")
    zmatrix = build_zmatrix(top)
    ring = [a.index for a in top.atoms if a.residue.name == "PHE" and a.name in PHE_RING]
    bonds, angles, dihedrals = ideal_values(top, zmatrix, ring)
    for quad, degrees in [((4, 6, 8, 24), -60), ((6, 8, 24, 26), -40), ((13, 10, 8, 6), 60)]:
        dihedrals[zmatrix.dihedral_index(quad)] = math.radians(degrees)
    return top, zmatrix, place_naively(zmatrix.rows, top.n_atoms, bonds, angles, dihedrals)


def rmsd(a, b):
    """RMSD (nm) after optimal superposition (numpy Kabsch, proper rotations) of [N, 3] arrays."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a, axis=0)
    b = np.asarray(b, dtype=np.float64) - np.mean(b, axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    rotated = a @ (u * [1.0, 1.0, d]) @ vt
    return float(np.sqrt(np.mean(np.sum((rotated - b) ** 2, axis=1))))
