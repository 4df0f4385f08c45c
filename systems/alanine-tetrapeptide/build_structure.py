"""Build structure.pdb of Ace-(Ala)3-Nme with boltzflow's own peptide builder.

The backbone is placed from Engh & Huber geometry (polyproline II, trans peptide bonds), the
side chains are PDBFixer's templates, OpenMM's Modeller adds the hydrogens and the force
field of the folder's system.toml minimises it (``boltzflow.system_builder.peptide_structure``);
the same as ``boltzflow systems new FOLDER --sequence AAA``, which also wrote system.toml.

    python systems/alanine-tetrapeptide/build_structure.py [FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

import openmm.app as app

from boltzflow.io import atomic_path, read_toml
from boltzflow.system_builder import peptide_structure

SEQUENCE = "AAA"


def main(folder: Path) -> None:
    spec = read_toml(folder / "system.toml")
    topology, positions, _, energy = peptide_structure(SEQUENCE, spec["forcefield"]["files"])
    with atomic_path(folder / spec["structure"]) as tmp:
        with open(tmp, "w") as f:
            app.PDBFile.writeFile(topology, positions * 10.0, f)   # PDB files are in Å
    print(f"{folder.name}: {topology.getNumAtoms()} atoms, minimised energy {energy:.2f} kJ/mol")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
