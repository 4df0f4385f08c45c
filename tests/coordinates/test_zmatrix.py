"""Z-matrices: automatic construction from the bond graph, explicit rows, and their errors."""

import shutil

import mdtraj
import pytest

from boltzflow.coordinates import ZMatrix, ZMatrixError, build_zmatrix
from boltzflow.errors import BoltzflowError
from boltzflow.systems import available_systems, load_system

from boltzflow.peptides import capped_peptide
from boltzflow.system_builder import parametrise

from .molecules import capped_peptide as capped_residue

ALA2 = load_system("alanine-dipeptide")
# a valid Z-matrix that starts from N instead of the automatic CH3 (atom order of the literature)
EXPLICIT = [[6], [8, 6], [14, 8, 6], [4, 6, 8, 14], [16, 14, 8, 6], [18, 16, 14, 8], [1, 4, 6, 8],
            [5, 4, 6, 1], [10, 8, 6, 14], [15, 14, 8, 16], [0, 1, 4, 6], [2, 1, 4, 0], [3, 1, 4, 0],
            [7, 6, 4, 8], [9, 8, 6, 14], [11, 10, 8, 6], [12, 10, 8, 11], [13, 10, 8, 11],
            [17, 16, 14, 18], [19, 18, 16, 14], [20, 18, 16, 19], [21, 18, 16, 19]]


def neighbours(topology):
    out = {a.index: set() for a in topology.atoms}
    for bond in topology.bonds:
        out[bond.atom1.index].add(bond.atom2.index)
        out[bond.atom2.index].add(bond.atom1.index)
    return out


CASES = {
    **{name: (lambda name=name: (load_system(name).topology, ())) for name in available_systems()},
    "capped-twenty-amino-acids": lambda: (mdtraj.Topology.from_openmm(
        parametrise(*capped_peptide("ACDEFGHIKLMNPQRSTVWY"), ["amber99sbildn.xml"])[0]), ()),
    "capped-phenylalanine": lambda: (capped_residue("PHE"), ()),
    "alanine-dipeptide-mixed": lambda: (ALA2.topology, (6, 8, 9, 10, 14)),
}


@pytest.mark.parametrize("case", CASES)
def test_automatic_zmatrix_places_every_atom_once_from_earlier_bonded_atoms(case):
    topology, cartesian = CASES[case]()
    zm = build_zmatrix(topology, cartesian)
    bonded = neighbours(topology)
    assert sorted(zm.order) == list(range(topology.n_atoms))
    placed = set(cartesian)
    for k, (atom, bond, angle, dihedral) in enumerate(zm.rows):
        refs = [r for r in (bond, angle, dihedral) if r >= 0]
        assert len(refs) == (3 if cartesian else min(k, 3))
        assert set(refs) <= placed and atom not in placed and len(set(refs + [atom])) == len(refs) + 1
        # these molecules allow every bond and angle of the Z-matrix to be a chemical one
        if bond >= 0:
            assert atom in bonded[bond], f"row {k}: bond reference {bond} is not bonded to {atom}"
        if angle >= 0:
            assert angle in bonded[bond], f"row {k}: angle reference {angle} is not bonded to {bond}"
        placed.add(atom)


@pytest.mark.parametrize("name", sorted(available_systems()))
def test_named_dihedrals_of_every_shipped_system_are_coordinates(name):
    system = load_system(name)
    zm = build_zmatrix(system.topology)
    assert len(zm.bonds) + len(zm.angles) + len(zm.dihedrals) == 3 * system.n_atoms - 6
    for quad in system.dihedrals.values():
        assert zm.dihedrals[zm.dihedral_index(quad)] in (quad, quad[::-1])


def test_alanine_dipeptide_has_60_coordinates_with_phi_and_psi_among_them():
    zm = build_zmatrix(ALA2.topology)
    assert (len(zm.bonds), len(zm.angles), len(zm.dihedrals)) == (21, 20, 19)
    for quad in ALA2.dihedrals.values():
        row = zm.dihedrals[zm.dihedral_index(quad)]
        assert row in (quad, quad[::-1])
    # heavy atoms first, hydrogens after, each hydrogen bonded to its bond reference
    hydrogen = [a.element.symbol == "H" for a in ALA2.topology.atoms]
    flags = [hydrogen[a] for a in zm.order]
    assert flags == sorted(flags)
    with pytest.raises(KeyError, match="not a coordinate"):
        zm.dihedral_index((0, 1, 2, 3))


def test_methyl_hydrogens_are_defined_relative_to_their_first_sibling():
    rows = {r[0]: r for r in build_zmatrix(ALA2.topology).rows}
    assert rows[11][1:3] == rows[12][1:3] == rows[13][1:3] == (10, 8)
    assert rows[12][3] == rows[13][3] == 11


def test_backbone_option_and_a_disconnected_graph():
    zm = build_zmatrix(ALA2.topology, backbone=[6, 8, 14])
    assert zm.order[:3] == (6, 8, 14)
    with pytest.raises(ZMatrixError, match="not bonded"):
        build_zmatrix(ALA2.topology, backbone=[6, 14])
    top = mdtraj.Topology()
    res = top.add_residue("MOL", top.add_chain())
    atoms = [top.add_atom(f"C{i}", mdtraj.element.carbon, res) for i in range(5)]
    for i, j in [(0, 1), (1, 2), (3, 4)]:
        top.add_bond(atoms[i], atoms[j])
    with pytest.raises(ZMatrixError, match=r"not connected.*\[3, 4\]"):
        build_zmatrix(top)


def test_explicit_rows_accept_short_or_padded_seed_rows():
    padded = [row + [-1] * (4 - len(row)) for row in EXPLICIT]
    assert ZMatrix.from_rows(EXPLICIT, 22) == ZMatrix.from_rows(padded, 22)
    zm = ZMatrix.from_rows(EXPLICIT, 22)
    assert zm.order[:3] == (6, 8, 14) and zm.rows[1] == (8, 6, -1, -1)


@pytest.mark.parametrize("rows, message", [
    (EXPLICIT[:-1], r"does not place atom\(s\) \[21\]"),
    (EXPLICIT + [[21, 18, 16, 19]], "defined twice"),
    ([EXPLICIT[0], EXPLICIT[1], EXPLICIT[3]] + EXPLICIT[2:3] + EXPLICIT[4:], r"row 2 .*expected \[atom, bond_ref, angle_ref\]"),
    (EXPLICIT[:3] + [[4, 6, 8, 9]] + EXPLICIT[4:], r"row 3 .*\[9\] are not placed before"),
    (EXPLICIT[:3] + [[4, 6, 8, 8]] + EXPLICIT[4:], "must be distinct"),
    (EXPLICIT[:3] + [[4, 6, 8]] + EXPLICIT[4:], r"row 3 .*expected \[atom, bond_ref, angle_ref, dihedral_ref\]"),
    (EXPLICIT[:3] + [[4, 6, 8, 14, 1]] + EXPLICIT[4:], "1 to 4 atom indices"),
    (EXPLICIT[:3] + [[4.0, 6, 8, 14]] + EXPLICIT[4:], "1 to 4 atom indices"),
    (EXPLICIT[:3] + [[40, 6, 8, 14]] + EXPLICIT[4:], r"out of range \[0, 22\)"),
])
def test_invalid_rows_are_named(rows, message):
    with pytest.raises(ZMatrixError, match=message) as error:
        ZMatrix.from_rows(rows, 22)
    assert isinstance(error.value, ValueError) and isinstance(error.value, BoltzflowError)


def test_mixed_rows_need_three_references_and_three_cartesian_atoms():
    auto = build_zmatrix(ALA2.topology, (6, 8, 9, 10, 14))
    assert ZMatrix.from_rows([list(r) for r in auto.rows], 22, (6, 8, 9, 10, 14)) == auto
    with pytest.raises(ZMatrixError, match="at least 3 distinct Cartesian atoms"):
        build_zmatrix(ALA2.topology, (6, 8))
    with pytest.raises(ZMatrixError, match=r"row 0 .*expected \[atom, bond_ref, angle_ref, dihedral_ref\]"):
        ZMatrix.from_rows([[4, 6, 8]] + [list(r) for r in auto.rows[1:]], 22, (6, 8, 9, 10, 14))


def test_system_toml_zmatrix_is_used_and_checked(tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(available_systems()["alanine-dipeptide"], folder)
    toml = folder / "system.toml"
    original = toml.read_text()
    toml.write_text(f"zmatrix = {EXPLICIT}\n" + original)
    ic = load_system(folder).internal_coordinates()
    assert [list(r[: max(1, sum(i >= 0 for i in r))]) for r in ic.zmatrix.rows] == EXPLICIT
    toml.write_text(f"zmatrix = {EXPLICIT[:-1]}\n" + original)
    with pytest.raises(ZMatrixError, match=r"\[21\]"):
        load_system(folder).internal_coordinates()
