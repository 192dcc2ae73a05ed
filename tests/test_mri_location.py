"""MR lesion candidates are placed by clock face, quadrant, depth and nipple distance.

The phantom's breasts are half-ellipsoids on the chest wall, so each nipple (the most
anterior point) is known from the phantom's own geometry: mid slice, the breast's centre
column, the ellipsoid's tip row. Lesions placed at every clock hour of both breasts must come
back at that hour, in the right quadrant; one on the nipple's axis is "central".
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from node.mri.kinetics import KineticResult, KineticSettings, analyse_volumes
from node.mri.location import breast_landmarks, locate
from node.mri.phantom import DcePhantom, PhantomLesion, make_dce_phantom

SLICES, ROWS, COLUMNS = 24, 96, 128
PIXEL_MM, SLICE_MM = 2.5, 3.0
CENTRES = {"R": 0.27 * COLUMNS, "L": 0.73 * COLUMNS}  # breast centre columns of the phantom
TIP_ROW = 0.5 * ROWS - 0.38 * ROWS  # chest wall row minus the ellipsoid's depth


def _run(phantom: DcePhantom) -> KineticResult:
    return analyse_volumes(
        [p.astype(np.float32) for p in phantom.phases],
        list(phantom.times_s),
        (SLICE_MM, PIXEL_MM, PIXEL_MM),
    )


def _at(side: str, hour: int, radius_mm: float, row: float) -> PhantomLesion:
    """A lesion ``radius_mm`` from the nipple's axis at ``hour`` (reader facing the patient)."""
    angle = math.radians(30 * hour)
    up, towards_left = radius_mm * math.cos(angle), radius_mm * math.sin(angle)
    centre = ((SLICES - 1) / 2 + up / SLICE_MM, row, CENTRES[side] + towards_left / PIXEL_MM)
    return PhantomLesion("washout", centre, 5.0)


def _expected_quadrant(side: str, hour: int) -> str:
    up = math.cos(math.radians(30 * hour)) >= 0
    lateral_hours = {"R": range(7, 12), "L": range(1, 6)}[side]
    return f"{'upper' if up else 'lower'} {'outer' if hour in lateral_hours else 'inner'}"


@pytest.mark.parametrize("first_hour", [1, 2, 3])
def test_every_clock_hour_of_both_breasts(first_hour: int) -> None:
    hours = [first_hour + 3 * k for k in range(4)]  # 90 degrees apart: lesions do not touch
    lesions = tuple(_at(side, h, 20.0, 0.3 * ROWS) for side in ("R", "L") for h in hours)
    phantom = make_dce_phantom(
        seed=first_hour, slices=SLICES, rows=ROWS, columns=COLUMNS, lesions=lesions
    )
    result = _run(phantom)
    assert len(result.candidates) == len(lesions)
    for candidate in result.candidates:
        truth = int(np.bincount(phantom.labels[result.labels == candidate.number]).argmax())
        lesion = lesions[truth - 1]
        side = "R" if lesion.centre[2] < COLUMNS / 2 else "L"
        hour = hours[(truth - 1) % 4]
        assert candidate.laterality == side
        assert candidate.location.clock_hour == hour
        assert not candidate.location.central
        if hour not in (3, 6, 9, 12):  # on an axis the quadrant is a coin toss
            assert candidate.quadrant == _expected_quadrant(side, hour)
        # nipple: mid slice, tip row, centre column; the lesion 20 mm off axis, rows behind
        depth_mm = (0.3 * ROWS - TIP_ROW) * PIXEL_MM
        truth_mm = math.hypot(20.0, depth_mm)
        assert candidate.location.distance_from_nipple_mm == pytest.approx(truth_mm, abs=4.0)
        assert candidate.location.depth == "middle"


def test_a_lesion_on_the_nipple_axis_is_central_and_depth_follows_the_rows() -> None:
    lesions = (
        PhantomLesion("plateau", ((SLICES - 1) / 2, TIP_ROW + 6, CENTRES["R"]), 5.0),
        PhantomLesion("washout", ((SLICES - 1) / 2 + 3, 0.44 * ROWS, CENTRES["L"] + 12), 5.0),
    )
    phantom = make_dce_phantom(seed=5, slices=SLICES, rows=ROWS, columns=COLUMNS, lesions=lesions)
    result = _run(phantom)
    by_side = {c.laterality: c for c in result.candidates}
    assert set(by_side) == {"R", "L"}
    central, deep = by_side["R"].location, by_side["L"].location
    assert central.central and central.clock_hour is None and central.depth == "anterior"
    assert deep.depth == "posterior" and not deep.central
    assert deep.clock_hour in (1, 2)  # 9 mm up, 30 mm towards the patient's left


def test_landmarks_of_the_phantom_breasts() -> None:
    phantom = make_dce_phantom(seed=1, slices=SLICES, rows=ROWS, columns=COLUMNS, lesions=())
    marks = breast_landmarks(phantom.breast, COLUMNS / 2, (SLICE_MM, PIXEL_MM, PIXEL_MM))
    for side, mark in marks.items():
        z, y, x = mark.nipple_mm
        assert z == pytest.approx((SLICES - 1) / 2 * SLICE_MM, abs=SLICE_MM)
        assert y == pytest.approx(TIP_ROW * PIXEL_MM, abs=2 * PIXEL_MM)
        assert x == pytest.approx(CENTRES[side] * PIXEL_MM, abs=2 * PIXEL_MM)
        assert mark.chest_wall_y_mm == pytest.approx(0.5 * ROWS * PIXEL_MM, abs=2 * PIXEL_MM)


def test_central_radius_is_a_setting() -> None:
    marks = breast_landmarks(
        make_dce_phantom(seed=1, slices=SLICES, rows=ROWS, columns=COLUMNS, lesions=()).breast,
        COLUMNS / 2,
        (SLICE_MM, PIXEL_MM, PIXEL_MM),
    )
    off_axis = ((SLICES - 1) / 2 + 4, 0.3 * ROWS, CENTRES["R"])  # 12 mm above the nipple
    spacing = (SLICE_MM, PIXEL_MM, PIXEL_MM)
    assert locate(off_axis, "R", marks["R"], spacing, 10.0).clock_hour == 12
    assert locate(off_axis, "R", marks["R"], spacing, 15.0).central
    with pytest.raises(ValueError, match="central_radius_mm"):
        KineticSettings(central_radius_mm=-1)
