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


def system_descriptions() -> dict[str, tuple[str, int]]:
    """(one-line description, number of atoms) of each shipped system, by name."""
    out = {}
    for name, folder in available_systems().items():
        spec = tomllib.loads((folder / "system.toml").read_text())
        lines = (folder / spec.get("structure", "structure.pdb")).read_text().splitlines()
        out[name] = (spec.get("description", ""), sum(line.startswith(("ATOM", "HETATM")) for line in lines))
    return out
