"""Build structure.pdb of Ace-(Ala)5-Nme with boltzflow's own peptide builder.

The backbone is placed from Engh & Huber geometry (polyproline II, trans peptide bonds), the
side chains are PDBFixer's templates, OpenMM's Modeller adds the hydrogens and the force
field of the folder's system.toml minimises it (``boltzflow.system_builder.rebuild_peptide_structure``);
the same as ``boltzflow systems new FOLDER --sequence AAAAA``, which also wrote system.toml.

    python systems/alanine-hexapeptide/build_structure.py [FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

from boltzflow.system_builder import rebuild_peptide_structure

if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    atoms, energy = rebuild_peptide_structure(folder, "AAAAA")
    print(f"{folder.name}: {atoms} atoms, minimised energy {energy:.2f} kJ/mol")
