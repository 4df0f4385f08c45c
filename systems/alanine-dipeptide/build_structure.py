"""Build structure.pdb of ACE-ALA-NME from standard geometry, then minimise it with OpenMM.

The molecule is written down as a Z-matrix in the literature's atom order (ACE HH31 0,
CH3 1, ..., NME H3 21) with textbook bond lengths and angles, a trans peptide (ω = 180°),
φ = -80°, ψ = 75° (the C7eq basin) and staggered methyl groups; boltzflow's own
``Placement`` turns it into positions. The force field of the folder's system.toml then
minimises it, and the script checks that Cα is L before writing the PDB atomically.

    python systems/alanine-dipeptide/build_structure.py [FOLDER]

FOLDER (default: this script's folder) holds the system.toml whose force field is used.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import torch

from boltzflow.coordinates import ZMatrix, has_expected_chirality
from boltzflow.coordinates.placement import Placement
from boltzflow.geometry import dihedral_angles
from boltzflow.io import read_toml
from boltzflow.system_builder import write_structure


# residue, atom name, element: the literature's order (OpenMM's Amber names)
ATOMS = [
    ("ACE", "H1", "H"), ("ACE", "CH3", "C"), ("ACE", "H2", "H"), ("ACE", "H3", "H"), ("ACE", "C", "C"),
    ("ACE", "O", "O"),
    ("ALA", "N", "N"), ("ALA", "H", "H"), ("ALA", "CA", "C"), ("ALA", "HA", "H"), ("ALA", "CB", "C"),
    ("ALA", "HB1", "H"), ("ALA", "HB2", "H"), ("ALA", "HB3", "H"), ("ALA", "C", "C"), ("ALA", "O", "O"),
    ("NME", "N", "N"), ("NME", "H", "H"), ("NME", "C", "C"), ("NME", "H1", "H"), ("NME", "H2", "H"),
    ("NME", "H3", "H"),
]
PHI, PSI, OMEGA = -80.0, 75.0, 180.0

# atom, bond ref, angle ref, dihedral ref; bond (nm), angle (deg), dihedral (deg)
ZMATRIX = [
    ((1,), ()),
    ((4, 1), (0.1522,)),
    ((6, 4, 1), (0.1335, 116.6)),
    ((8, 6, 4, 1), (0.1449, 121.9, OMEGA)),
    ((14, 8, 6, 4), (0.1522, 110.1, PHI)),
    ((16, 14, 8, 6), (0.1335, 116.2, PSI)),
    ((18, 16, 14, 8), (0.1449, 121.9, OMEGA)),
    ((5, 4, 6, 8), (0.1229, 122.9, 0.0)),      # carbonyl O cis to Cα in a trans peptide
    ((7, 6, 4, 5), (0.1010, 119.8, 180.0)),    # amide H trans to O
    ((15, 14, 16, 18), (0.1229, 122.9, 0.0)),
    ((17, 16, 14, 15), (0.1010, 119.8, 180.0)),
    ((10, 8, 6, 14), (0.1526, 110.5, -122.0)),  # Cβ and Hα around Cα: this handedness is L
    ((9, 8, 6, 14), (0.1090, 109.5, 118.0)),
    ((0, 1, 4, 6), (0.1090, 109.5, 180.0)),    # staggered methyl hydrogens
    ((2, 1, 4, 6), (0.1090, 109.5, 60.0)),
    ((3, 1, 4, 6), (0.1090, 109.5, -60.0)),
    ((11, 10, 8, 6), (0.1090, 109.5, 60.0)),
    ((12, 10, 8, 6), (0.1090, 109.5, 180.0)),
    ((13, 10, 8, 6), (0.1090, 109.5, -60.0)),
    ((19, 18, 16, 14), (0.1090, 109.5, 180.0)),
    ((20, 18, 16, 14), (0.1090, 109.5, 60.0)),
    ((21, 18, 16, 14), (0.1090, 109.5, -60.0)),
]
CHIRAL_CA = [{"center": 8, "substituents": [6, 14, 10, 9], "expected": "L"}]


def standard_geometry() -> np.ndarray:
    """Positions [22, 3] (nm) of the Z-matrix above."""
    zmatrix = ZMatrix.from_rows([atoms for atoms, _ in ZMATRIX], n_atoms=len(ATOMS))
    values = [v for _, v in ZMATRIX]
    bonds = torch.tensor([[v[0] for v in values if len(v) >= 1]], dtype=torch.float64)
    angles = torch.tensor([[math.radians(v[1]) for v in values if len(v) >= 2]], dtype=torch.float64)
    dihedrals = torch.tensor([[math.radians(v[2]) for v in values if len(v) >= 3]], dtype=torch.float64)
    return Placement(zmatrix)(bonds, angles, dihedrals)[0].numpy()


def topology() -> app.Topology:
    top = app.Topology()
    chain = top.addChain()
    residues, atoms = {}, []
    for res_name, name, element in ATOMS:
        if res_name not in residues:
            residues[res_name] = top.addResidue(res_name, chain)
        atoms.append(top.addAtom(name, app.Element.getBySymbol(element), residues[res_name]))
    bonds = {(atoms_[0], atoms_[1]) for atoms_, _ in ZMATRIX if len(atoms_) >= 2}
    for i, j in sorted(bonds):
        top.addBond(atoms[i], atoms[j])
    return top


def minimise(top: app.Topology, positions: np.ndarray, forcefield_files: list[str]) -> tuple[np.ndarray, float]:
    """Positions (nm) at a local minimum of the force field, and its energy (kJ/mol)."""
    system = app.ForceField(*forcefield_files).createSystem(top, nonbondedMethod=app.NoCutoff, constraints=None)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1e-3, 0)
    state = context.getState(getPositions=True, getEnergy=True)
    return (state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def main(folder: Path) -> None:
    spec = read_toml(folder / "system.toml")
    top = topology()
    positions, energy = minimise(top, standard_geometry(), spec["forcefield"]["files"])
    xyz = torch.tensor(positions)[None]
    if not has_expected_chirality(xyz, CHIRAL_CA).all():
        raise SystemExit("the built structure is not L-alanine; check the Cβ / Hα dihedrals")
    phi, psi = torch.rad2deg(dihedral_angles(xyz, torch.tensor([[4, 6, 8, 14], [6, 8, 14, 16]])))[0].tolist()
    write_structure(folder / spec["structure"], top, positions)
    print(f"{folder.name}: minimised energy {energy:.2f} kJ/mol, phi {phi:.1f} deg, psi {psi:.1f} deg, L-alanine")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
