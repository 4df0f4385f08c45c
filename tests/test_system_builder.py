"""New systems from a sequence or a PDB file: the structure, its chemistry, names, and the errors."""

import os
import stat

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import pytest
import torch
from typer.testing import CliRunner

from boltzflow.cli.app import app as cli
from boltzflow.coordinates import find_chiral_centers, has_expected_chirality
from boltzflow.errors import BoltzflowError
from boltzflow.peptides import ONE_LETTER, capped_peptide, parse_sequence
from boltzflow.system_builder import new_system, parametrise
from boltzflow.systems import load_system

# atoms of each residue in a peptide, Amber naming, pH 7 (ASP/GLU charged, LYS/ARG charged,
# HIS neutral with one ring H): a textbook count, independent of the builder
RESIDUE_ATOMS = {"ALA": 10, "ARG": 24, "ASN": 14, "ASP": 12, "CYS": 11, "GLN": 17, "GLU": 15, "GLY": 7,
                 "HIS": 17, "ILE": 19, "LEU": 19, "LYS": 22, "MET": 17, "PHE": 20, "PRO": 14, "SER": 11,
                 "THR": 14, "TRP": 24, "TYR": 21, "VAL": 16}
CHARGE = {"ARG": 1, "LYS": 1, "ASP": -1, "GLU": -1}
AMBER96_OBC1 = ["amber96.xml", "implicit/obc1.xml"]


def energy(system, positions):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)


def test_all_twenty_amino_acids_build_with_their_atoms_charges_and_chiral_centres():
    sequence = "".join(sorted(ONE_LETTER))
    topology, positions, system = parametrise(*capped_peptide(sequence), ["amber99sbildn.xml", "amber99_obc.xml"])
    names = [r.name for r in topology.residues()]
    assert names[0] == "ACE" and names[-1] == "NME" and len(names) == 22
    expected = sum(RESIDUE_ATOMS[ONE_LETTER[c]] for c in sequence) + 6 + 6
    assert topology.getNumAtoms() == expected
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    charge = sum(nonbonded.getParticleParameters(i)[0].value_in_unit(openmm.unit.elementary_charge)
                 for i in range(system.getNumParticles()))
    assert charge == pytest.approx(sum(CHARGE.get(ONE_LETTER[c], 0) for c in sequence), abs=1e-4)
    top = mdtraj.Topology.from_openmm(topology)
    centers = find_chiral_centers(top, positions)
    # every Cα but glycine's, and Cβ of isoleucine and threonine
    assert sorted(c["name"].split()[0] for c in centers) == ["CA"] * 19 + ["CB", "CB"]
    assert {top.atom(c["center"]).residue.name for c in centers if c["name"].startswith("CB")} == {"ILE", "THR"}
    assert all(c["expected"] == "L" for c in centers if c["name"].startswith("CA"))
    mirrored = find_chiral_centers(top, positions * np.array([-1.0, 1.0, 1.0]))
    assert [c["expected"] for c in mirrored] == ["D" if c["expected"] == "L" else "L" for c in centers]
    # backbone: trans peptide bonds, no atom pair closer than 0.09 nm before any minimisation
    trajectory = mdtraj.Trajectory(positions[None], top)
    assert np.all(np.abs(np.degrees(mdtraj.compute_omega(trajectory)[1])) > 170)
    pairs = np.array([(i, j) for i in range(top.n_atoms) for j in range(i + 1, top.n_atoms)])
    assert mdtraj.compute_distances(trajectory, pairs).min() > 0.09


def test_a_sequence_gives_the_shipped_alanine_dipeptide_up_to_atom_order(tmp_path):
    """Sequence "A" with the shipped force field is the literature's molecule: mapped by (residue,
    atom name), both OpenMM systems give the same energy on the same conformation, and the
    found chiral centre and φ/ψ are the shipped ones."""
    folder = new_system(tmp_path / "ala", sequence="A", forcefield=AMBER96_OBC1)
    ours, shipped = load_system(folder), load_system("alanine-dipeptide")
    key = lambda a: (a.residue.name, a.name)  # noqa: E731
    ours_index = {key(a): a.index for a in ours.topology.atoms}
    order = [ours_index[key(a)] for a in shipped.topology.atoms]    # ours[order[i]] is shipped atom i
    assert sorted(order) == list(range(22))
    positions = np.empty_like(ours.positions)
    positions[order] = shipped.positions
    assert energy(ours.openmm_system, positions) == pytest.approx(energy(shipped.openmm_system, shipped.positions), abs=1e-6)
    assert {k: [order.index(i) for i in v] for k, v in ours.dihedrals.items()} == {k: list(v) for k, v in shipped.dihedrals.items()}
    ((center,),) = [ours.chiral_centers]
    assert order.index(center["center"]) == shipped.chiral_centers[0]["center"]
    assert [order.index(i) for i in center["substituents"]] == shipped.chiral_centers[0]["substituents"]
    assert center["expected"] == "L" and set(ours.states) == set(shipped.states)


def test_names_of_backbone_dihedrals_agree_with_mdtraj(tmp_path):
    system = load_system("alanine-tetrapeptide")
    assert list(system.dihedrals) == ["phi1", "psi1", "phi2", "psi2", "phi3", "psi3"]
    phi, psi = mdtraj.compute_phi(mdtraj.Trajectory(system.positions[None], system.topology))[0], \
        mdtraj.compute_psi(mdtraj.Trajectory(system.positions[None], system.topology))[0]
    assert [list(system.dihedrals[f"phi{i}"]) for i in (1, 2, 3)] == phi.tolist()
    assert [list(system.dihedrals[f"psi{i}"]) for i in (1, 2, 3)] == psi.tolist()
    assert {"alphaR2", "C7eq_beta3", "phi1_positive"} <= set(system.states)


@pytest.mark.parametrize("name, atoms, residues", [("alanine-tetrapeptide", 42, 3), ("alanine-hexapeptide", 62, 5)])
def test_shipped_peptides_are_l_alanines_in_the_published_force_field(name, atoms, residues):
    system = load_system(name)
    assert system.n_atoms == atoms and [r.name for r in system.topology.residues] == ["ACE"] + ["ALA"] * residues + ["NME"]
    assert {type(f).__name__ for f in system.openmm_system.getForces()} == {
        "HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce", "GBSAOBCForce"}
    assert system.openmm_system.getNumConstraints() == 0
    assert len(system.chiral_centers) == residues
    assert has_expected_chirality(torch.tensor(system.positions)[None], system.chiral_centers).item()


def test_a_pdb_without_hydrogens_gets_them_and_works(tmp_path):
    shipped = load_system("alanine-dipeptide")
    heavy = [a.index for a in shipped.topology.atoms if a.element.symbol != "H"]
    pdb = tmp_path / "heavy.pdb"
    mdtraj.Trajectory(shipped.positions[None], shipped.topology).atom_slice(heavy).save_pdb(str(pdb))
    folder = new_system(tmp_path / "from-pdb", pdb=pdb, forcefield=AMBER96_OBC1, temperature=350.0)
    system = load_system(folder)
    assert system.n_atoms == 22 and system.temperature == 350.0
    assert list(system.dihedrals) == ["phi", "psi"] and len(system.chiral_centers) == 1
    ic = system.internal_coordinates()
    z, _ = ic.inverse(torch.tensor(system.positions)[None])
    assert ic.dim == 60 and torch.isfinite(z).all()


def cli_error(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert isinstance(result.exception, BoltzflowError), result.output
    return str(result.exception)


def test_mistakes_are_one_line_and_leave_nothing_behind(tmp_path):
    assert "unknown one-letter code(s) B, X" in cli_error(["systems", "new", str(tmp_path / "a"), "--sequence", "AXB"])
    assert "exactly one of" in cli_error(["systems", "new", str(tmp_path / "a")])
    shipped = load_system("alanine-dipeptide")
    # a structure with a missing heavy atom (Cβ of ALA 2) names the residue and the atom
    kept = [a.index for a in shipped.topology.atoms if not (a.residue.name == "ALA" and a.name == "CB")]
    broken = tmp_path / "no-cb.pdb"
    mdtraj.Trajectory(shipped.positions[None], shipped.topology).atom_slice(kept).save_pdb(str(broken))
    assert "missing heavy atoms in ALA2 (chain A): CB" in cli_error(["systems", "new", str(tmp_path / "b"), "--pdb", str(broken)])
    # a residue the force field has no template for: alanine with a sulfur for its Cβ
    odd = tmp_path / "odd.pdb"
    mdtraj.Trajectory(shipped.positions[None], shipped.topology).save_pdb(str(odd))
    lines = odd.read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line[12:16].strip() == "CB" and line[17:20] == "ALA")
    lines[k] = lines[k][:76] + " S"
    odd.write_text("\n".join(lines) + "\n")
    message = cli_error(["systems", "new", str(tmp_path / "c"), "--pdb", str(odd)])
    assert "does not match the structure" in message and "residue 1 (ALA)" in message
    # a second molecule: an explicit water beside the peptide
    wet = tmp_path / "wet.pdb"
    water = shipped.topology.copy()
    residue = water.add_residue("HOH", water.add_chain())
    oxygen = water.add_atom("O", mdtraj.element.oxygen, residue)
    for name in ("H1", "H2"):
        water.add_bond(oxygen, water.add_atom(name, mdtraj.element.hydrogen, residue))
    xyz = np.concatenate([shipped.positions, [[2.0, 2.0, 2.0], [2.1, 2.0, 2.0], [2.0, 2.1, 2.0]]])
    mdtraj.Trajectory(xyz[None], water).save_pdb(str(wet))
    message = cli_error(["systems", "new", str(tmp_path / "w"), "--pdb", str(wet), "--forcefield", "amber96.xml",
                         "--forcefield", "implicit/obc1.xml", "--forcefield", "tip3p.xml"])
    assert "holds 2 molecules (the others: residues HOH)" in message
    # a force the torch force field cannot compile (CMAP of ff19SB)
    message = cli_error(["systems", "new", str(tmp_path / "d"), "--sequence", "AA", "--forcefield", "amber19-all.xml"])
    assert "CMAPTorsionForce" in message and "OpenMM backend" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-cb.pdb", "odd.pdb", "wet.pdb"]
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "keep.txt").write_text("mine")
    assert "already exists" in cli_error(["systems", "new", str(tmp_path / "e"), "--sequence", "A"])
    assert (tmp_path / "e" / "keep.txt").read_text() == "mine"


def test_sequences_are_checked_before_anything_is_built():
    assert parse_sequence("gAv") == ["GLY", "ALA", "VAL"]
    with pytest.raises(BoltzflowError, match="empty"):
        parse_sequence("  ")


def test_the_command_writes_a_folder_every_command_accepts(tmp_path):
    result = CliRunner().invoke(cli, ["systems", "new", str(tmp_path / "gp"), "--sequence", "GP"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "gp" / "system.toml").read_text()
    assert text.startswith("# written by boltzflow systems new gp --sequence GP\n")
    system = load_system(tmp_path / "gp")
    assert [r.name for r in system.topology.residues] == ["ACE", "GLY", "PRO", "NME"]
    assert [c["name"] for c in system.chiral_centers] == ["CA PRO3"]
    assert app.PDBFile(str(tmp_path / "gp" / "structure.pdb")).topology.getNumAtoms() == 7 + 14 + 12


def test_a_new_system_goes_through_every_command(tmp_path):
    """train, sample, free-energy, md and umbrella accept a folder written by systems new
    (a tiny run of each: this checks the plumbing, not the numbers)."""
    runner = CliRunner()

    def ok(*args):
        result = runner.invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    folder = tmp_path / "ag"
    ok("systems", "new", folder, "--sequence", "AG")
    run = tmp_path / "run"
    ok("train", folder, "--out", run, "--set", "steps=2", "--set", "batch_size=8", "--set", "model.layers=2",
       "--set", "model.hidden=[16]", "--set", "final_samples=64", "--set", "eval_batch_size=16",
       "--set", "anneal.samples=64", "--threads", "1")
    assert (run / "ramachandran.png").is_file() and (run / "pmf_psi2.png").is_file()
    ok("sample", run, "-n", "64", "--out", tmp_path / "s.h5")
    assert "phi1_negative → phi1_positive" in ok("free-energy", tmp_path / "s.h5")
    ok("md", folder, "--ns", "0.0002", "--out", tmp_path / "md.h5", "--report-interval", "50", "--threads", "1")
    pytest.importorskip("pymbar")
    ok("umbrella", folder, "--cv", "phi2", "--windows", "3", "--ps", "0.2", "--equilibration-ps", "0.02",
       "--out", tmp_path / "umbrella", "--threads", "1")
    assert (tmp_path / "umbrella").is_dir()


def test_the_folder_and_its_files_have_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        folder = new_system(tmp_path / "a", sequence="A")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o644}


def test_a_scratch_folder_left_by_a_killed_run_is_removed_by_the_next(tmp_path):
    """`systems new` killed after minimising leaves its hidden scratch folder; the next run for
    the same folder removes it (its process is gone) and leaves a live run's alone."""
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    stale, live = tmp_path / f".a.{gone.pid}.x1y2.tmp", tmp_path / f".a.{os.getpid()}.z3w4.tmp"
    for scratch in (stale, live):
        scratch.mkdir()
        (scratch / "structure.pdb").write_text("REMARK\n")
    new_system(tmp_path / "a", sequence="A")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a", live.name])


def test_constraints_option_writes_a_constrained_system_and_rejects_a_bad_value(tmp_path):
    result = CliRunner().invoke(cli, ["systems", "new", str(tmp_path / "a"), "--sequence", "A",
                                      "--constraints", "hbonds"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "a" / "system.toml").read_text()
    assert text.startswith("# written by boltzflow systems new a --sequence A --constraints hbonds\n")
    assert 'constraints = "hbonds"' in text
    system = load_system(tmp_path / "a")
    assert len(system.constrained_bonds) == 12 and system.internal_coordinates().dim == 3 * 22 - 6 - 12
    message = cli_error(["systems", "new", str(tmp_path / "b"), "--sequence", "A", "--constraints", "HBond"])
    assert message == "constraints must be one of none, hbonds, allbonds, hangles, got 'HBond'"
    assert not (tmp_path / "b").exists()
