"""The synthetic phantom: deterministic, shaped and oriented like a mammogram, truthful."""

from __future__ import annotations

import numpy as np
import pytest

from node.synthetic.phantom import make_phantom, patient_orientation


def test_same_seed_same_image_other_seed_other_image() -> None:
    a, b, c = make_phantom(3), make_phantom(3), make_phantom(4)
    assert np.array_equal(a.pixels, b.pixels) and a.lesions == b.lesions
    assert not np.array_equal(a.pixels, c.pixels)


@pytest.mark.parametrize("bits", [10, 12, 14, 16])
def test_pixels_fit_bits_stored(bits: int) -> None:
    p = make_phantom(1, rows=256, columns=208, bits_stored=bits, calcifications=1)
    assert p.pixels.dtype == np.uint16
    assert int(p.pixels.max()) <= (1 << bits) - 1
    assert int(p.pixels.max()) > (1 << bits) // 4  # not a dark image


def test_background_dark_tissue_bright_chest_wall_on_the_left_for_left_breast() -> None:
    p = make_phantom(5, laterality="L", view="CC", lesions=0)
    px = p.pixels.astype(float)
    assert px[:, -20:].mean() < 5  # air beyond the nipple side
    assert px[:, :20].mean() > 20 * max(1.0, px[:, -20:].mean())  # breast on the chest wall
    assert px[0:5, 0:5].max() < 50  # corners are air
    assert p.patient_orientation == ("A", "R")


def test_right_breast_is_the_mirror_layout() -> None:
    left = make_phantom(6, laterality="L", lesions=1)
    right = make_phantom(6, laterality="R", lesions=1)
    assert np.array_equal(left.pixels[:, ::-1], right.pixels)
    (ml,), (mr,) = left.lesions, right.lesions
    assert mr.column == pytest.approx(left.pixels.shape[1] - 1 - ml.column)
    assert mr.row == ml.row


def test_patient_orientation_values() -> None:
    assert patient_orientation("L", "CC") == ("A", "R")
    assert patient_orientation("R", "CC") == ("P", "L")
    assert patient_orientation("L", "MLO") == ("A", "FR")
    assert patient_orientation("R", "MLO") == ("P", "FL")
    with pytest.raises(ValueError, match="ViewPosition"):
        patient_orientation("L", "ML")


def test_mlo_has_a_bright_pectoral_corner() -> None:
    p = make_phantom(7, view="MLO", lesions=0)
    corner = p.pixels[10:60, 5:40].astype(float).mean()
    assert corner > np.median(p.pixels[p.pixels > 0])


def test_lesions_are_known_inside_the_breast_and_brighter_than_around() -> None:
    p = make_phantom(8, lesions=2, calcifications=1)
    assert [f.kind for f in p.lesions] == ["mass", "mass", "calcification"]
    for f in p.lesions:
        assert f.score == 1.0 and f.radius > 5
        r, c = round(f.row), round(f.column)
        assert p.pixels[r, c] > 0
    mass = p.lesions[0]
    r, c, rad = int(mass.row), int(mass.column), int(mass.radius)
    centre = p.pixels[r - rad // 3 : r + rad // 3 + 1, c - rad // 3 : c + rad // 3 + 1].mean()
    ring = p.pixels[r - 3 * rad : r + 3 * rad + 1, c + 2 * rad : c + 3 * rad + 1].mean()
    assert centre > ring


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="BitsStored"):
        make_phantom(0, bits_stored=20)
    with pytest.raises(ValueError, match="64x64"):
        make_phantom(0, rows=10)
    with pytest.raises(ValueError, match="place"):
        make_phantom(0, rows=64, columns=64, lesions=40)
