"""New systems: a folder with ``system.toml`` and ``structure.pdb`` from a sequence or a PDB file.

``new_system(folder, sequence="AAA")`` builds the capped peptide Ace-AAA-Nme
(``boltzflow.peptides``); ``new_system(folder, pdb="mine.pdb")`` takes a structure as it is.
Either way OpenMM's ``Modeller`` adds the missing hydrogens with the force field, the
structure is minimised on OpenMM's Reference platform, chiral centres are found from the
bond graph with the handedness the structure has, and a peptide's φ/ψ get names and states.
Everything is checked before the folder appears: the force field matches every residue, the
torch force field compiles every force, the Z-matrix places every atom and ``load_system``
reads the result. The folder is written whole or not at all.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .coordinates import find_chiral_centers
from .energy.torch_forcefield import TorchForceField
from .errors import BoltzflowError
from .io.atomic import atomic_path, check_writable, default_mode, remove_stale
from .io.toml import dumps_toml, read_toml
from .peptides import backbone_dihedrals, backbone_states, capped_peptide, parse_sequence
from .systems import CONSTRAINTS, load_system

# the tetra- and hexapeptide benchmarks' force field (TA-BG): Amber ff99SB-ILDN with OBC2 GB
DEFAULT_FORCEFIELD = ("amber99sbildn.xml", "amber99_obc.xml")
PH = 7.0
MINIMISER_TOLERANCE = 1e-3  # kJ/mol/nm; at 0.1 a 1e-12 nm change of the start moved the minimum by 3e-3 nm


def _forcefield(files: Sequence[str]):
    import openmm.app as app

    if not files:
        raise BoltzflowError("no force-field files given; expected OpenMM XML names such as "
                             f"{' '.join(DEFAULT_FORCEFIELD)}")
    try:
        return app.ForceField(*files)
    except Exception as exc:  # OpenMM raises ValueError, OSError or XML errors for a bad file
        raise BoltzflowError(f"cannot read the force field {' '.join(files)}: {exc}") from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_structure(pdb: Union[str, Path]):
    """(OpenMM Topology, positions [n_atoms, 3] nm) of a PDB file, refusing missing heavy atoms."""
    import mdtraj
    import openmm.unit as unit
    from pdbfixer import PDBFixer

    path = Path(pdb)
    if not path.is_file():
        raise BoltzflowError(f"{path}: no such PDB file")
    try:
        fixer = PDBFixer(filename=str(path))
    except Exception as exc:  # the PDB reader fails with assertions and index errors
        raise BoltzflowError(f"{path}: not a readable PDB file ({_first_line(exc)})") from None
    if fixer.topology.getNumAtoms() == 0:
        raise BoltzflowError(f"{path}: holds no atoms")
    fixer.findMissingResidues()
    fixer.missingResidues = {}          # gaps in SEQRES are not ours to fill
    fixer.findMissingAtoms()
    missing = [f"{r.name}{r.id} (chain {r.chain.id}): {', '.join(a.name for a in atoms)}"
               for r, atoms in fixer.missingAtoms.items()]
    missing += [f"{r.name}{r.id} (chain {r.chain.id}): {', '.join(names)}" for r, names in fixer.missingTerminals.items()]
    if missing:
        raise BoltzflowError(f"{path}: missing heavy atoms in {'; '.join(missing[:5])}"
                             f"{' …' if len(missing) > 5 else ''}; complete the structure (e.g. with PDBFixer) first")
    molecules = mdtraj.Topology.from_openmm(fixer.topology).find_molecules()
    if len(molecules) > 1:
        others = sorted({a.residue.name for m in molecules[1:] for a in m})
        raise BoltzflowError(f"{path.name} holds {len(molecules)} molecules (the others: residues "
                             f"{', '.join(others[:5])}); a system is one molecule in implicit solvent: "
                             "remove waters, ions and ligands first")
    return fixer.topology, np.array(fixer.positions.value_in_unit(unit.nanometer), dtype=np.float64)


def parametrise(topology, positions: np.ndarray, forcefield_files: Sequence[str]):
    """Hydrogens added (pH 7), force field matched, torch force field compiled:
    (OpenMM Topology, positions [n_atoms, 3] nm, OpenMM System)."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    forcefield = _forcefield(forcefield_files)
    modeller = app.Modeller(topology, positions * unit.nanometer)
    # Modeller starts new hydrogens at random.random() offsets, then minimises them: seeded,
    # on the Reference platform, the same structure comes out every time
    saved = random.getstate()
    random.seed(0)
    try:
        modeller.addHydrogens(forcefield, pH=PH, platform=openmm.Platform.getPlatformByName("Reference"))
    except Exception as exc:  # OpenMM: ValueError / KeyError for residues it has no hydrogen rules for
        raise BoltzflowError(f"the force field {' '.join(forcefield_files)} does not match the structure "
                             f"(adding hydrogens): {_first_line(exc)}") from None
    finally:
        random.setstate(saved)
    try:
        system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                         constraints=None, removeCMMotion=False)
    except ValueError as exc:
        raise BoltzflowError(f"the force field {' '.join(forcefield_files)} does not match the structure: "
                             f"{_first_line(exc)}") from None
    try:
        TorchForceField(system)
    except NotImplementedError as exc:
        reason = _first_line(exc).split("; use the OpenMM backend")[0]
        raise BoltzflowError(f"the torch force field cannot compile this system: {reason}; "
                             f"choose force-field files without it (default: {' '.join(DEFAULT_FORCEFIELD)})") from None
    return modeller.topology, np.array(modeller.positions.value_in_unit(unit.nanometer)), system


def minimise(system, positions: np.ndarray) -> tuple[np.ndarray, float]:
    """A local energy minimum near ``positions`` [n_atoms, 3] (nm) on OpenMM's Reference
    platform: (positions nm, energy kJ/mol)."""
    import openmm
    import openmm.unit as unit

    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, MINIMISER_TOLERANCE, 0)
    state = context.getState(getPositions=True, getEnergy=True)
    return (state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def prepare(topology, positions: np.ndarray, forcefield_files: Sequence[str]):
    """``parametrise`` then ``minimise``: (OpenMM Topology, positions nm, OpenMM System, energy kJ/mol)."""
    topology, positions, system = parametrise(topology, positions, forcefield_files)
    positions, energy = minimise(system, positions)
    return topology, positions, system, energy


def peptide_structure(sequence: str, forcefield_files: Sequence[str] = DEFAULT_FORCEFIELD):
    """``prepare`` applied to the capped peptide of ``sequence`` (``boltzflow.peptides``):
    (OpenMM Topology, positions [n_atoms, 3] nm, OpenMM System, energy kJ/mol)."""
    return prepare(*capped_peptide(sequence), forcefield_files)


def write_structure(path: Union[str, Path], topology, positions: np.ndarray) -> Path:
    """Write positions [n_atoms, 3] (nm) of an OpenMM topology as a PDB file (Å), atomically."""
    import openmm.app as app

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        app.PDBFile.writeFile(topology, positions * 10.0, f)
    return Path(path)


def rebuild_peptide_structure(folder: Union[str, Path], sequence: str) -> tuple[int, float]:
    """Rebuild a peptide system's structure file from its ``system.toml`` (force field, file
    name): what a shipped peptide's ``build_structure.py`` runs. Returns (atoms, energy kJ/mol)."""
    folder = Path(folder)
    spec = read_toml(folder / "system.toml")
    topology, positions, _, energy = peptide_structure(sequence, spec["forcefield"]["files"])
    write_structure(folder / spec["structure"], topology, positions)
    return topology.getNumAtoms(), energy


def system_toml(name: str, description: str, temperature: float, forcefield_files: Sequence[str],
                dihedrals: dict, states: dict, chiral_centers: list, made_by: str = "",
                constraints: str = "none") -> str:
    """The text of a ``system.toml`` (keys as in ``systems/README.md``)."""
    spec = {"name": name, "description": description, "structure": "structure.pdb", "temperature": float(temperature),
            "forcefield": {"files": list(forcefield_files), "nonbonded_method": "NoCutoff", "constraints": constraints},
            "dihedrals": {k: list(v) for k, v in dihedrals.items()}, "states": states,
            "chiral_centers": chiral_centers}
    header = f"# written by {made_by}\n" if made_by else ""
    return header + dumps_toml({k: v for k, v in spec.items() if v != {} and v != []})


def new_system(folder: Union[str, Path], sequence: Optional[str] = None, pdb: Union[str, Path, None] = None,
               forcefield: Sequence[str] = DEFAULT_FORCEFIELD, temperature: float = 300.0,
               name: Optional[str] = None, made_by: str = "", constraints: str = "none") -> Path:
    """Write a system folder (``system.toml``, ``structure.pdb``) from a sequence or a PDB file.

    Args:
        folder: must not exist yet, or be empty.
        sequence: one-letter codes of a peptide, capped with Ace and Nme.
        pdb: a structure file instead; hydrogens are added where missing.
        forcefield: OpenMM force-field XML files (names OpenMM ships, or paths).
        temperature: K.
        name: the system's name (default: the folder's name).
        made_by: the command that made it, written as a comment.
        constraints: ``forcefield.constraints`` of system.toml (none | hbonds | allbonds |
            hangles); the structure is minimised with flexible bonds either way, and the
            internal coordinates must hold every constrained pair as a Z-matrix bond.
    Returns the folder. Raises ``BoltzflowError`` (one line, nothing written) for a wrong input.
    The folder is built in a scratch folder beside it (``.NAME.PID.RANDOM.tmp``) and renamed when
    complete; one left by a run that was killed is removed by the next run for the same folder.
    """
    import mdtraj

    folder = Path(folder)
    if (sequence is None) == (pdb is None):
        raise BoltzflowError("give exactly one of a sequence (one-letter codes, e.g. AAA) or a structure (a PDB file)")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BoltzflowError(f"{folder} already exists and is not an empty folder; choose a new one")
    if not 0 < temperature < math.inf:
        raise BoltzflowError(f"temperature must be a positive, finite number of K, got {temperature}")
    if constraints not in CONSTRAINTS:
        raise BoltzflowError(f"constraints must be one of {', '.join(CONSTRAINTS)}, got {constraints!r}")
    if sequence is not None:
        parse_sequence(sequence)
    check_writable(folder, "system folder", directory=True)
    forcefield = [str(Path(f).resolve()) if Path(f).is_file() else f for f in forcefield]

    if sequence is not None:
        source = f"Ace-{sequence.strip().upper()}-Nme"
        topology, positions, _, energy = peptide_structure(sequence, forcefield)
    else:
        source = Path(pdb).name
        topology, positions, _, energy = prepare(*read_structure(pdb), forcefield)
    traj_top = mdtraj.Topology.from_openmm(topology)
    dihedrals = backbone_dihedrals(traj_top)
    name = name or folder.name
    held = "" if constraints == "none" else f", constraints {constraints}"
    description = (f"{source}, {' + '.join(Path(f).name for f in forcefield)}, {temperature:g} K{held}, "
                   f"{traj_top.n_atoms} atoms (minimised energy {energy:.1f} kJ/mol)")
    text = system_toml(name, description, temperature, [Path(f).name if Path(f).is_file() else f for f in forcefield],
                       dihedrals, backbone_states(dihedrals), find_chiral_centers(traj_top, positions), made_by,
                       constraints)

    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder)  # scratch folders of earlier runs that were killed
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}.", suffix=".tmp", dir=folder.parent))
    os.chmod(scratch, default_mode(directory=True))
    try:
        for f in forcefield:
            if Path(f).is_file():
                shutil.copy(f, scratch / Path(f).name)
        (scratch / "system.toml").write_text(text)
        write_structure(scratch / "structure.pdb", topology, positions)
        load_system(scratch).internal_coordinates()   # what train, sample and md will do with it
        if folder.exists():
            folder.rmdir()
        os.rename(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder
