"""Chirality at declared centres: L/D from positions, batched, mirror images detected."""

import math

import numpy as np
import pytest
import torch

from boltzflow.coordinates import D, L, chirality, has_expected_chirality, signed_volumes
from boltzflow.systems import available_systems, load_system

MIRROR = torch.tensor([-1.0, 1.0, 1.0])


@pytest.mark.parametrize("name", available_systems())
def test_shipped_l_alanine_is_l_and_its_mirror_image_is_d(name, device, dtype):
    system = load_system(name)
    x = torch.tensor(system.positions, dtype=dtype, device=device)[None]
    mirror = x * MIRROR.to(x)
    batch = torch.cat([x, mirror, x])
    k = len(system.chiral_centers)
    assert k >= 1 and chirality(batch, system.chiral_centers).tolist() == [[L] * k, [D] * k, [L] * k]
    assert has_expected_chirality(batch, system.chiral_centers).tolist() == [True, False, True]


def test_signed_volume_follows_the_cip_rule():
    # lowest priority d points away from a viewer on +z; a → b → c runs clockwise seen from +z: R
    h = 1 / 3
    clockwise = [(math.cos(t), math.sin(t), h) for t in (math.pi / 2, math.pi / 2 - 2 * math.pi / 3,
                                                         math.pi / 2 - 4 * math.pi / 3)]
    x = torch.tensor([[(0.0, 0.0, 0.0), *clockwise, (0.0, 0.0, -1.0)]], dtype=torch.float64)
    centre = [[0, 1, 2, 3, 4]]
    assert signed_volumes(x, centre).item() < 0
    assert chirality(x, centre).item() == D            # R is D for amino-acid listing order
    swapped = [[0, 2, 1, 3, 4]]                         # exchanging two substituents inverts it
    assert chirality(x, swapped).item() == L


def test_mirror_images_negate_every_dihedral_and_are_detected_through_internal_coordinates():
    system = load_system("alanine-dipeptide")
    ic = system.internal_coordinates()
    x = torch.tensor(system.positions)[None]
    (b, a, d), (bm, am, dm) = (ic.physical(ic.inverse(y)[0]) for y in (x, x * MIRROR.double()))
    assert torch.allclose(b, bm) and torch.allclose(a, am)
    assert np.abs(np.angle(np.exp(1j * (dm + d).numpy()))).max() < 1e-10
    # flipping the improper torsion that places CB turns L-alanine into D-alanine
    k = ic.dihedral_index((10, 8, 6, 14))
    z, _ = ic.inverse(x)
    flipped = z.clone()
    flipped[0, k] = -2 * ic.normalization.dihedral_ref[k - ic.n_bonds - ic.n_angles]
    y, _ = ic(torch.cat([z, flipped]))
    assert chirality(y, system.chiral_centers).flatten().tolist() == [L, D]


def test_bad_centres_are_rejected():
    x = torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        chirality(x, [[0, 1, 2, 3]])
    with pytest.raises(ValueError, match=r"\[batch, n_atoms, 3\]"):
        chirality(torch.zeros(5, 3), [[0, 1, 2, 3, 4]])
    assert has_expected_chirality(x, []).tolist() == [True, True]
