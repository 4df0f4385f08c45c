"""Peptides: capped chains from one-letter sequences, backbone dihedrals and states by residue.

``capped_peptide(sequence)`` builds Ace-(sequence)-Nme with heavy atoms only: the backbone
is placed by boltzflow's own Z-matrix ``Placement`` from Engh & Huber's geometry (trans
peptide bonds, polyproline-II φ = −75°, ψ = 145°), and each side chain is PDBFixer's
residue template superposed on its N, Cα, C. Hydrogens come later, from OpenMM's
``Modeller`` with the target force field (``boltzflow.system_builder``).

``backbone_dihedrals`` names φ and ψ of every residue that has both neighbours (``phi``,
``psi`` for a single residue, ``phi1``, ``psi1``, ``phi2``, … otherwise), and
``backbone_states`` gives each of them the alanine-dipeptide states.
"""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import torch

from .coordinates.cartesian import fit_rotation
from .coordinates.placement import Placement
from .coordinates.zmatrix import ZMatrix
from .errors import BoltzflowError

ONE_LETTER = {"A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
              "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
              "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL"}
AMINO_ACIDS = frozenset(ONE_LETTER.values())
CAPS = ("ACE", "NME")

# Engh & Huber (1991) backbone geometry: bond lengths (nm) and angles (degrees)
BOND = {("N", "CA"): 0.1458, ("CA", "C"): 0.1525, ("C", "N"): 0.1329, ("C", "O"): 0.1231}
ANGLE = {("N", "CA", "C"): 111.2, ("CA", "C", "N"): 116.2, ("C", "N", "CA"): 121.7, ("O", "C", "N"): 123.0}
PHI, PSI, OMEGA = -75.0, 145.0, 180.0   # degrees: polyproline II, trans peptide bonds

# states of each residue's (φ, ψ), degrees [low, high); a range with low > high wraps through ±180
STATES = {"phi_negative": {"phi": [-180, 0]}, "phi_positive": {"phi": [0, 180]},
          "C7eq_beta": {"phi": [-180, 0], "psi": [50, -100]}, "alphaR": {"phi": [-180, 0], "psi": [-100, 50]},
          "alphaL_C7ax": {"phi": [0, 180]}}


def parse_sequence(sequence: str) -> list[str]:
    """One-letter codes → residue names; a clear error names any unknown letter."""
    letters = sequence.strip().upper()
    unknown = sorted({c for c in letters if c not in ONE_LETTER})
    if not letters or unknown:
        raise BoltzflowError(f"sequence {sequence!r}: {'unknown one-letter code(s) ' + ', '.join(unknown) if unknown else 'empty'}; "
                             f"expected letters of the 20 standard amino acids ({''.join(sorted(ONE_LETTER))})")
    return [ONE_LETTER[c] for c in letters]


def _template(name: str) -> dict[str, tuple[np.ndarray, str]]:
    """PDBFixer's template of residue ``name``: atom name → (position in nm, element)."""
    text = (resources.files("pdbfixer") / "templates" / f"{name}.pdb").read_text()
    atoms = {}
    for line in text.splitlines():
        if line.startswith(("ATOM", "HETATM")):
            atom = line[12:16].strip()
            element = line[76:78].strip() or atom[0]
            atoms[atom] = (np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])]) / 10.0, element)
    return atoms


def capped_peptide(sequence: str):
    """Ace-(sequence)-Nme, heavy atoms: (OpenMM Topology with bonds, positions [n_atoms, 3] in nm)."""
    import openmm.app as app

    residues = ["ACE", *parse_sequence(sequence), "NME"]
    # the backbone chain CH3, C | N, CA, C | ... | N, C(H3): atom labels (residue k, name)
    chain = [(0, "CH3"), (0, "C")] + [(k, n) for k in range(1, len(residues) - 1) for n in ("N", "CA", "C")]
    chain += [(len(residues) - 1, "N"), (len(residues) - 1, "C")]
    kinds = ["CA", "C"] + ["N", "CA", "C"] * (len(residues) - 2) + ["N", "CA"]   # geometry class of each
    index = {label: i for i, label in enumerate(chain)}
    torsion = {"N": PSI, "CA": OMEGA, "C": PHI}    # the dihedral that places an atom of this kind
    rows, bonds, angles, dihedrals = [[0], [1, 0]], [BOND[("CA", "C")]], [], []
    for i in range(2, len(chain)):
        rows.append([i, i - 1, i - 2] + ([i - 3] if i >= 3 else []))
        a, b, c = kinds[i], kinds[i - 1], kinds[i - 2]
        bonds.append(BOND.get((b, a)) or BOND[(a, b)])
        angles.append(ANGLE[(c, b, a)] if (c, b, a) in ANGLE else ANGLE[(a, b, c)])
        if i >= 3:
            dihedrals.append(torsion[a])
    # carbonyl O of every C: in the peptide plane, cis to the next Cα (trans peptide)
    for k in range(len(residues) - 1):
        c = index[(k, "C")]
        index[(k, "O")] = len(chain) + k
        rows.append([index[(k, "O")], c, c + 1, c + 2])
        bonds.append(BOND[("C", "O")])
        angles.append(ANGLE[("O", "C", "N")])
        dihedrals.append(0.0)
    n_backbone = len(chain) + len(residues) - 1
    zmatrix = ZMatrix.from_rows(rows, n_atoms=n_backbone)
    as_tensor = lambda values, scale=1.0: torch.tensor([[v * scale for v in values]], dtype=torch.float64)  # noqa: E731
    xyz = Placement(zmatrix)(as_tensor(bonds), as_tensor(angles, math.pi / 180),
                             as_tensor(dihedrals, math.pi / 180))[0].numpy()
    backbone = {label: xyz[i] for label, i in index.items()}

    topology, positions = app.Topology(), []
    omm_chain = topology.addChain()
    for k, name in enumerate(residues):
        residue = topology.addResidue(name, omm_chain, str(k + 1))
        template = _template(name)
        if name in AMINO_ACIDS:   # the template's side chain, moved onto the backbone's N, Cα, C
            source = torch.tensor(np.array([template[a][0] for a in ("N", "CA", "C")]))
            target = torch.tensor(np.array([backbone[(k, a)] for a in ("N", "CA", "C")]))
            rotation = fit_rotation(source, target - target.mean(0)).numpy()
            source_mean, target_mean = source.mean(0).numpy(), target.mean(0).numpy()
        for atom, (position, element) in template.items():
            if (k, atom) in backbone:
                position = backbone[(k, atom)]
            elif name in AMINO_ACIDS:
                position = (position - source_mean) @ rotation + target_mean
            else:
                raise BoltzflowError(f"cap {name}: template atom {atom} has no backbone position")
            topology.addAtom(atom, app.Element.getBySymbol(element), residue)
            positions.append(position)
    topology.createStandardBonds()
    return topology, np.array(positions)


def backbone_dihedrals(topology) -> dict[str, tuple[int, int, int, int]]:
    """φ and ψ (4 atom indices) of every amino-acid residue of an mdtraj topology that has a
    previous C and a next N: ``phi``/``psi`` for one such residue, ``phi1``, ``psi1``, … for several."""
    found = []
    for chain in topology.chains:
        residues = list(chain.residues)
        for k, residue in enumerate(residues):
            if residue.name not in AMINO_ACIDS and residue.name not in ("HID", "HIE", "HIP", "CYX", "ASH", "GLH", "LYN"):
                continue
            atoms = {a.name: a.index for a in residue.atoms}
            before = {a.name: a.index for a in residues[k - 1].atoms} if k > 0 else {}
            after = {a.name: a.index for a in residues[k + 1].atoms} if k + 1 < len(residues) else {}
            if all(n in atoms for n in ("N", "CA", "C")) and "C" in before and "N" in after:
                found.append(((before["C"], atoms["N"], atoms["CA"], atoms["C"]),
                              (atoms["N"], atoms["CA"], atoms["C"], after["N"])))
    if len(found) == 1:
        return {"phi": found[0][0], "psi": found[0][1]}
    return {f"{name}{i}": quad for i, pair in enumerate(found, start=1) for name, quad in zip(("phi", "psi"), pair)}


def backbone_states(dihedrals: dict) -> dict[str, dict[str, list]]:
    """The alanine-dipeptide states of each residue's (φ, ψ), named with its number
    (``alphaR``, or ``alphaR1``, ``alphaR2``, …): name → {dihedral name: [low, high] degrees}."""
    suffixes = [name[3:] for name in dihedrals if name.startswith("phi") and "psi" + name[3:] in dihedrals]
    states = {}
    for suffix in suffixes:
        for state, ranges in STATES.items():
            name = state.replace("phi", "phi" + suffix) if state.startswith("phi") else state + suffix
            states[name] = {cv + suffix: list(bounds) for cv, bounds in ranges.items()}
    return states
