"""Handedness of declared chiral centres, batched: count, exclude or reject mirror images.

A centre is given as its atom and four substituents (a, b, c, d) in priority order, d
lowest (``system.toml``: ``center = 8, substituents = [6, 14, 10, 9]``, i.e. N, C, CB, HA).
Its signed volume is V = (a − x₀) · ((b − x₀) × (c − x₀)). Looking from the side opposite
d, a → b → c runs clockwise (R) when V < 0 and counter-clockwise (S) when V > 0.

L/D follows the amino-acid rule: with the substituents listed as N, C′, side chain, Hα,
L is S (V > 0) and D is R. That listing is the CIP order for every proteinogenic amino
acid except cysteine (and selenocysteine), where Cβ outranks C′ and L is R by CIP: list
those as N, C′, Cβ, Hα too, so that ``expected = "L"`` keeps its meaning.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

L, D = 1, -1

Centers = Union[Tensor, Sequence[Sequence[int]], Sequence[dict]]


def _atoms(centers: Centers, device: torch.device) -> Tensor:
    """Centres as a long tensor [K, 5]: centre atom, then the four substituents."""
    if isinstance(centers, Tensor):
        rows = centers
    else:
        rows = [[c["center"], *c["substituents"]] if isinstance(c, dict) else list(c) for c in centers]
        rows = torch.tensor(rows, dtype=torch.long).reshape(-1, 5) if all(len(r) == 5 for r in rows) else None
    if rows is None or rows.dim() != 2 or rows.shape[1] != 5:
        raise ValueError("chiral centres must be [K, 5] atom indices (centre, then 4 substituents by "
                         "priority) or dicts with 'center' and 'substituents'")
    return rows.to(device=device, dtype=torch.long)


def signed_volumes(xyz: Tensor, centers: Centers) -> Tensor:
    """V = (a − x₀)·((b − x₀) × (c − x₀)) in nm³ for positions [batch, n_atoms, 3] → [batch, K]."""
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"expected positions of shape [batch, n_atoms, 3], got {list(xyz.shape)}")
    atoms = _atoms(centers, xyz.device)
    arms = xyz[:, atoms[:, 1:4]] - xyz[:, atoms[:, :1]]          # [batch, K, 3 arms, 3]
    a, b, c = arms.unbind(2)
    return (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)


def chirality(xyz: Tensor, centers: Centers) -> Tensor:
    """``L`` (+1), ``D`` (−1) or 0 (planar) per centre: int8 [batch, K]."""
    return torch.sign(signed_volumes(xyz, centers)).to(torch.int8)


def has_expected_chirality(xyz: Tensor, centers: Sequence[dict]) -> Tensor:
    """Bool [batch]: every centre has its ``expected`` label ("L" by default), as declared in
    ``system.chiral_centers``; False marks mirror images to count, exclude or reject."""
    if not centers:
        return torch.ones(len(xyz), dtype=torch.bool, device=xyz.device)
    expected = torch.tensor([L if c.get("expected", "L") == "L" else D for c in centers],
                            dtype=torch.int8, device=xyz.device)
    return (chirality(xyz, centers) == expected).all(-1)


def _graph_classes(elements: Sequence[str], neighbours: Sequence[Sequence[int]]) -> list[int]:
    """Colour refinement of a molecular graph: atoms in different classes are constitutionally
    different (same class: equivalent for every molecule short of pathological symmetry)."""
    labels = {symbol: k for k, symbol in enumerate(sorted(set(elements)))}
    classes = [labels[e] for e in elements]
    while True:
        signatures = [(classes[i], tuple(sorted(classes[j] for j in neighbours[i]))) for i in range(len(classes))]
        ranks = {s: k for k, s in enumerate(sorted(set(signatures)))}
        refined = [ranks[s] for s in signatures]
        if len(ranks) == len(set(classes)):
            return refined
        classes = refined


def find_chiral_centers(topology, positions) -> list[dict]:
    """Every atom with four bonded substituents of four different kinds, with the handedness
    it has in ``positions`` [n_atoms, 3]: dicts for ``system.toml`` (name, center,
    substituents, expected).

    ``topology``: an mdtraj Topology with bonds. An amino acid's Cα lists its substituents as
    N, C′, Cβ, Hα, so that ``expected`` reads L or D as in biochemistry; any other centre lists
    them by constitutional class, and ``expected`` records the sign of its signed volume in
    the given structure with the same rule (V > 0: "L").
    """
    elements = [a.element.symbol if a.element is not None else a.name for a in topology.atoms]
    neighbours: list[list[int]] = [[] for _ in elements]
    for bond in topology.bonds:
        neighbours[bond.atom1.index].append(bond.atom2.index)
        neighbours[bond.atom2.index].append(bond.atom1.index)
    classes = _graph_classes(elements, neighbours)
    xyz = torch.as_tensor(positions, dtype=torch.float64)[None]
    centers = []
    for atom in topology.atoms:
        around = neighbours[atom.index]
        if len(around) != 4 or elements[atom.index] == "H" or len({classes[j] for j in around}) < 4:
            continue
        names = {topology.atom(j).name: j for j in around}
        if atom.name == "CA" and {"N", "C", "CB"} <= set(names) and len(names) == 4:
            (hydrogen,) = set(names) - {"N", "C", "CB"}
            substituents = [names["N"], names["C"], names["CB"], names[hydrogen]]
        else:
            substituents = sorted(around, key=lambda j: classes[j], reverse=True)
        row = [[atom.index, *substituents]]
        label = "L" if chirality(xyz, row)[0, 0] > 0 else "D"
        residue = atom.residue
        centers.append({"name": f"{atom.name} {residue.name}{residue.resSeq}", "center": atom.index,
                        "substituents": substituents, "expected": label})
    return centers
