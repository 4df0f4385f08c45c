"""Build structure.pdb of Ace-(Ala)5-Nme with boltzflow's own peptide builder.

The backbone is placed from Engh & Huber geometry (polyproline II, trans peptide bonds), the
side chains are PDBFixer's templates, OpenMM's Modeller adds the hydrogens and the force
field of the folder's system.toml minimises it with flexible bonds
(``boltzflow.system_builder.rebuild_peptide_structure``): the structure of alanine-hexapeptide, whose
structure.pdb this folder's is a copy of: the constraints change the OpenMM System
and the flow's coordinates, not the structure.

    python systems/alanine-hexapeptide-hbonds/build_structure.py [FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

from boltzflow.system_builder import rebuild_peptide_structure

if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    atoms, energy = rebuild_peptide_structure(folder, "AAAAA")
    print(f"{folder.name}: {atoms} atoms, minimised energy {energy:.2f} kJ/mol")
