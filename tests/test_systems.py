"""Loading systems: shipped names, user folders and TOML files, and the promised errors."""

import shutil
from pathlib import Path

import numpy as np
import openmm.unit as unit
import pytest
import torch
from typer.testing import CliRunner

from boltzflow import runs
from boltzflow.cli.app import app
from boltzflow.errors import BoltzflowError
from boltzflow.systems import SystemFileError, available_systems, load_system

SHIPPED = available_systems()


@pytest.fixture
def user_system(tmp_path):
    """A copy of the default system in a user's folder, ready to be broken."""
    folder = tmp_path / "mine"
    shutil.copytree(SHIPPED["alanine-dipeptide"], folder)
    return folder


def rewrite(folder, old, new):
    path = folder / "system.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return text.splitlines().index(next(l for l in text.splitlines() if old in l)) + 1


def test_default_system_has_the_literature_atom_order_and_units():
    system = load_system("alanine-dipeptide")
    names = [(a.residue.name, a.name) for a in system.topology.atoms]
    assert [n for _, n in names][:9] == ["H1", "CH3", "H2", "H3", "C", "O", "N", "H", "CA"]
    assert names[14] == ("ALA", "C") and names[16] == ("NME", "N") and names[18] == ("NME", "C")
    assert system.positions.shape == (22, 3)
    assert system.dihedrals == {"phi": (4, 6, 8, 14), "psi": (6, 8, 14, 16)}
    expected_kT = (unit.MOLAR_GAS_CONSTANT_R * 300 * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
    assert system.kT == pytest.approx(expected_kT, rel=1e-12)
    # bonded lengths of the shipped structure are physical (0.09-0.16 nm)
    lengths = [np.linalg.norm(system.positions[b.atom1.index] - system.positions[b.atom2.index])
               for b in system.topology.bonds]
    assert len(lengths) == 21 and 0.09 < min(lengths) and max(lengths) < 0.16


def test_collective_variables_agree_with_mdtraj():
    import mdtraj

    system = load_system("alanine-dipeptide-vacuum")
    xyz = system.positions[None] + 0.03 * np.random.default_rng(0).standard_normal((5, 22, 3))
    cvs = system.collective_variables(torch.tensor(xyz))
    reference = mdtraj.compute_dihedrals(mdtraj.Trajectory(xyz, system.topology),
                                         np.array([system.dihedrals["phi"], system.dihedrals["psi"]]))
    np.testing.assert_allclose(cvs["phi"].numpy(), reference[:, 0], atol=1e-5)
    np.testing.assert_allclose(cvs["psi"].numpy(), reference[:, 1], atol=1e-5)


def test_states_partition_and_wrap():
    states = load_system("alanine-dipeptide").states
    phi = torch.tensor([-2.0, -2.0, -1.0, 1.0, -1.0])
    psi = torch.tensor([3.0, -3.0, -0.5, 0.0, 1.2])   # ψ = ±3 rad lies in C7eq/β (wraps through ±π)
    cvs = {"phi": phi, "psi": psi}
    assert states["C7eq_beta"].contains(cvs).tolist() == [True, True, False, False, True]
    assert states["alphaR"].contains(cvs).tolist() == [False, False, True, False, False]
    assert states["phi_positive"].contains(cvs).tolist() == [False, False, False, True, False]
    together = states["C7eq_beta"].contains(cvs).int() + states["alphaR"].contains(cvs).int() \
        + states["alphaL_C7ax"].contains(cvs).int()
    assert together.tolist() == [1] * 5


def test_user_system_from_folder_and_from_toml(user_system):
    by_folder = load_system(user_system)
    by_file = load_system(user_system / "system.toml")
    assert by_folder.name == by_file.name == "alanine-dipeptide"
    assert by_folder.folder == user_system


def test_unknown_name_lists_the_known_systems():
    with pytest.raises(BoltzflowError, match="unknown system 'alanine'.*alanine-dipeptide-vacuum"):
        load_system("alanine")


def test_invalid_toml_names_the_file_and_line(user_system):
    line = rewrite(user_system, 'temperature = 300.0', 'temperature = = 300.0')
    with pytest.raises(SystemFileError) as err:
        load_system(user_system)
    assert "system.toml" in str(err.value) and f"line {line}" in str(err.value)


@pytest.mark.parametrize("old, new, key", [
    ("temperature = 300.0", "temperature = -3.0", "temperature"),
    ("temperature = 300.0", 'temperature = "warm"', "temperature"),
    ('nonbonded_method = "NoCutoff"', 'nonbonded_method = "PME"', "forcefield.nonbonded_method"),
    ('constraints = "none"', 'constraints = "some"', "forcefield.constraints"),
    ("phi = [4, 6, 8, 14]", "phi = [4, 6, 8, 99]", "dihedrals.phi"),
    ('structure = "structure.pdb"', 'structure = "missing.pdb"', "structure"),
    ('alphaR = { phi = [-180, 0], psi = [-100, 50] }', 'alphaR = { omega = [0, 10] }', "states.alphaR"),
])
def test_bad_value_names_file_line_and_key(user_system, old, new, key):
    line = rewrite(user_system, old, new)
    with pytest.raises(SystemFileError) as err:
        load_system(user_system)
    message = str(err.value)
    assert "system.toml" in message and f"line {line}" in message and f"'{key}'" in message


@pytest.mark.parametrize("content", ["garbage\nATOM  nonsense\n", ""], ids=["garbage", "empty"])
def test_an_unreadable_structure_is_named(user_system, content):
    (user_system / "structure.pdb").write_text(content)
    with pytest.raises(SystemFileError, match="key 'structure'.*structure.pdb"):
        load_system(user_system)


@pytest.mark.parametrize("xml, message", [("<ForceField><Atom", "unclosed token"),
                                          (None, "Could not locate file")], ids=["malformed", "missing"])
def test_an_unreadable_force_field_is_named(user_system, xml, message):
    if xml is not None:
        (user_system / "broken.xml").write_text(xml)
    rewrite(user_system, 'files = ["amber96.xml", "implicit/obc1.xml"]', 'files = ["broken.xml"]')
    with pytest.raises(SystemFileError, match=f"key 'forcefield.files' cannot read the force field.*{message}"):
        load_system(user_system)


def test_missing_key_is_named(user_system):
    rewrite(user_system, 'name = "alanine-dipeptide"', "")
    with pytest.raises(SystemFileError, match="missing key 'name'"):
        load_system(user_system)


def test_energy_backend_name_is_checked():
    with pytest.raises(ValueError, match="'torch' or 'openmm'"):
        load_system("alanine-dipeptide-vacuum").energy("gromacs")


def test_cli_lists_and_shows_systems():
    runner = CliRunner()
    listing = runner.invoke(app, ["systems"], terminal_width=200)
    assert listing.exit_code == 0
    for name in SHIPPED:
        assert name in listing.output
    shown = runner.invoke(app, ["systems", "show", "alanine-dipeptide"], terminal_width=200)
    assert shown.exit_code == 0
    for text in ("300 K", "CustomGBForce", "C-N-CA-C", "[4, 6, 8, 14]", "alphaR", "-100°"):
        assert text in shown.output, text


def test_cli_broken_system_is_one_line_without_traceback(user_system):
    import subprocess
    import sys

    rewrite(user_system, "temperature = 300.0", "temperature = -3.0")
    proc = subprocess.run([sys.executable, "-m", "boltzflow.cli.app", "systems", "show", str(user_system)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "'temperature'" in proc.stderr and "must be positive" in proc.stderr


def test_bad_chiral_centre_is_named(user_system):
    rewrite(user_system, "substituents = [6, 14, 10, 9]", "substituents = [6, 14, 10]")
    with pytest.raises(SystemFileError, match="'chiral_centers'.*4 'substituents'"):
        load_system(user_system)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_structure_is_what_its_script_builds(tmp_path, name):
    """structure.pdb is reproducible: the folder's build_structure.py (standard geometry through
    boltzflow's Z-matrix placement, then OpenMM minimisation) writes the same coordinates."""
    import runpy
    import sys

    folder = tmp_path / name
    shutil.copytree(SHIPPED[name], folder)
    shutil.copytree(SHIPPED["alanine-dipeptide"], tmp_path / "alanine-dipeptide", dirs_exist_ok=True)
    (folder / "structure.pdb").unlink()
    argv, sys.argv = sys.argv, [str(folder / "build_structure.py")]
    try:
        runpy.run_path(str(folder / "build_structure.py"), run_name="__main__")
    finally:
        sys.argv = argv
    rebuilt, shipped = load_system(folder), load_system(name)
    assert np.abs(rebuilt.positions - shipped.positions).max() < 1e-3   # nm; PDB rounding is 5e-5


def test_constrained_bonds_leave_the_bond_force_and_keep_every_other_energy_term():
    """forcefield.constraints = "hbonds": OpenMM holds the X–H pairs as constraints and drops
    them from HarmonicBondForce; the torch force field matches OpenMM Reference on that System."""
    import openmm

    from boltzflow.reference.simulation import langevin_context

    constrained, flexible = load_system("alanine-tetrapeptide-hbonds"), load_system("alanine-tetrapeptide")
    counts = {}
    for system in (constrained, flexible):
        forces = {type(f).__name__: f for f in system.openmm_system.getForces()}
        counts[system.name] = (forces["HarmonicBondForce"].getNumBonds(), forces["HarmonicAngleForce"].getNumAngles())
    assert counts == {"alanine-tetrapeptide-hbonds": (19, 72), "alanine-tetrapeptide": (41, 72)}
    assert [(i, j) for i, j, _ in constrained.constrained_bonds][:3] == [(2, 3), (2, 4), (2, 5)]
    assert {round(d, 6) for *_, d in constrained.constrained_bonds} == {0.101, 0.109}   # N–H, C–H of Amber
    xyz = constrained.positions[None] + 0.01 * np.random.default_rng(0).standard_normal((4, 42, 3))
    context = openmm.Context(constrained.openmm_system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    reference = []
    for x in xyz:
        context.setPositions(x)
        reference.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    energy = constrained.energy("torch").double()(torch.tensor(xyz)) * constrained.kT
    np.testing.assert_allclose(energy.numpy(), reference, rtol=1e-9, atol=1e-6)
    # reference MD of a constrained system: 2 fs steps, and the constrained bonds keep their
    # lengths to OpenMM's constraint tolerance (1e-5, relative) after 50 steps
    context = langevin_context(constrained, "Reference")
    assert context.getIntegrator().getStepSize().value_in_unit(unit.picosecond) == 0.002
    context.getIntegrator().step(50)
    moved = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    pairs = np.array([(i, j) for i, j, _ in constrained.constrained_bonds])
    lengths = np.linalg.norm(moved[pairs[:, 0]] - moved[pairs[:, 1]], axis=1)
    np.testing.assert_allclose(lengths, [d for *_, d in constrained.constrained_bonds], rtol=2e-5)
    assert np.abs(moved - constrained.positions).max() > 1e-3   # it did move


@pytest.mark.parametrize("folder", sorted((Path(runs.__file__).parent / "shipped").iterdir()), ids=lambda p: p.name)
def test_shipped_reference_gives_every_pair_the_report_forms(folder):
    """A shipped free_energies.json belongs to a shipped system and holds ΔF, with a finite
    interval from independent repeats, of exactly the pairs the report compares."""
    from boltzflow.runs.report import state_pairs
    from boltzflow.runs.references import shipped_reference

    system = load_system(folder.name)
    reference = shipped_reference(system)
    pairs = state_pairs(system, dict.fromkeys(system.states, 1.0))
    assert list(reference.delta_f) == [f"{a} -> {b}" for a, b in pairs]
    assert all(e.n >= 4 and e.low < e.value < e.high for e in reference.delta_f.values())
