"""Build this folder's structure.pdb: the alanine-dipeptide builder (standard geometry,
L-alanine) minimised with this folder's force field.

    python systems/<this folder>/build_structure.py
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.argv = [sys.argv[0], str(here)]
    runpy.run_path(str(here.parent / "alanine-dipeptide" / "build_structure.py"), run_name="__main__")
