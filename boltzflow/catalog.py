"""The shipped molecular systems, listed from their files alone: names, one-line descriptions and
atom counts from each folder's system.toml and structure, without OpenMM or torch, so that
``boltzflow systems`` lists them in a fraction of a second (``boltzflow.systems`` loads one)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


def available_systems() -> dict[str, Path]:
    """Names of the shipped systems and their folders."""
    library = Path(str(resources.files("boltzflow.system_files")))
    return {p.name: p for p in sorted(library.iterdir()) if (p / "system.toml").is_file()}


def system_descriptions() -> dict[str, tuple[str, int, int]]:
    """(one-line description, number of atoms, flow dimensions) of each shipped system, by name:
    3N − 6 internal coordinates, less one per hydrogen (its bond) when X–H bonds are constrained."""
    out = {}
    for name, folder in available_systems().items():
        spec = tomllib.loads((folder / "system.toml").read_text())
        atoms = [line for line in (folder / spec.get("structure", "structure.pdb")).read_text().splitlines()
                 if line.startswith(("ATOM", "HETATM"))]
        fixed = 0
        if spec.get("forcefield", {}).get("constraints", "none") == "hbonds":
            fixed = sum(line[76:78].strip() == "H" for line in atoms)   # PDB element columns
        out[name] = (spec.get("description", ""), len(atoms), 3 * len(atoms) - 6 - fixed)
    return out
