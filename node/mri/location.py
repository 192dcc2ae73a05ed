"""Where an MR lesion candidate lies in its breast: clock face, quadrant, depth, nipple distance.

A breast MRI report places a lesion as a mammography report does (ACR BI-RADS Atlas, 5th
edition, "Location of lesion"): breast, clock face as the reader faces the patient, quadrant,
depth (anterior, middle, posterior third) and distance from the nipple. Unlike a mammogram,
the DCE volume gives all three axes at once, so every candidate gets all of them:

- nipple: the most anterior point of that breast's mask (the breast mask of
  :func:`node.mri.kinetics.breast_mask`, split at the midline), averaged over the voxels
  within ``_TIP_MM`` of that point; a prone breast hangs with the nipple lowest;
- clock face and quadrant: the candidate's offset from the nipple in the coronal plane
  (superior up, the patient's left on the reader's right), so 9 o'clock is the right
  breast's lateral side and 3 o'clock the left breast's; within ``central_radius_mm`` of
  the nipple's axis a candidate is "central" (no clock hour, CID 6018 Central region);
- depth: the anterior-posterior distance from the nipple as a fraction of the nipple to
  chest-wall distance (the posterior edge of the breast mask on that side);
- distance from the nipple: straight-line, in mm, centroid to nipple.

Coordinates are the canonical axial ones :mod:`node.mri.kinetics` requires: array
(slice, row, column) is (+z superior, +y posterior, +x patient's left). These are estimates
from the mask; the outputs say "estimated".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["BreastLandmarks", "Depth", "MriLocation", "Quadrant", "breast_landmarks", "locate"]

Quadrant = Literal["upper outer", "upper inner", "lower outer", "lower inner"]
Depth = Literal["anterior", "middle", "posterior"]
_TIP_MM: Final = 3.0  # voxels this close (along y) to the most anterior one form the nipple
_MIN_ROW_VOXELS: Final = 3  # a row with fewer mask voxels is noise, not the nipple
_QUADRANTS: Final[dict[tuple[bool, bool], Quadrant]] = {  # (upper, outer)
    (True, True): "upper outer",
    (True, False): "upper inner",
    (False, True): "lower outer",
    (False, False): "lower inner",
}


@dataclass(frozen=True)
class BreastLandmarks:
    """One breast's nipple (mm: z superior, y posterior, x patient's left) and chest wall."""

    nipple_mm: tuple[float, float, float]
    chest_wall_y_mm: float  # posterior edge of the breast mask on this side


@dataclass(frozen=True)
class MriLocation:
    """A candidate's place in its breast, as a reader says it."""

    clock_hour: int | None  # 1-12, None when central
    quadrant: Quadrant  # from the signs of the coronal offset, also given when central
    central: bool  # within the central radius of the nipple's axis
    depth: Depth
    distance_from_nipple_mm: float


def _to_mm(index: npt.ArrayLike, spacing: tuple[float, float, float]) -> npt.NDArray[np.float64]:
    return np.asarray(index, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)


def breast_landmarks(
    mask: npt.NDArray[np.bool_], midline: float, spacing: tuple[float, float, float]
) -> dict[Literal["L", "R"], BreastLandmarks]:
    """Nipple and chest wall of each breast with mask voxels; ``midline`` is a column index."""
    found: dict[Literal["L", "R"], BreastLandmarks] = {}
    cut = math.ceil(midline)  # columns < midline are the right breast's, as for candidates
    halves: tuple[tuple[Literal["L", "R"], slice, int], ...] = (
        ("R", slice(0, cut), 0),
        ("L", slice(cut, mask.shape[2]), cut),
    )
    for side, columns, offset in halves:
        part = mask[:, :, columns]
        per_row = part.sum(axis=(0, 2))
        rows = np.flatnonzero(per_row >= _MIN_ROW_VOXELS)
        if rows.size == 0:  # a sliver of a breast: take what there is
            rows = np.flatnonzero(per_row)
        if rows.size == 0:
            continue
        first = int(rows[0])
        reach = max(1, round(_TIP_MM / spacing[1]))
        z, r, c = np.nonzero(part[:, first : first + reach, :])
        tip = (float(z.mean()), float(r.mean()) + first, float(c.mean()) + offset)
        nipple = _to_mm(tip, spacing)
        wall = _to_mm((0.0, float(rows[-1]), 0.0), spacing)[1]
        found[side] = BreastLandmarks(
            nipple_mm=(float(nipple[0]), float(nipple[1]), float(nipple[2])),
            chest_wall_y_mm=float(wall),
        )
    return found


def _depth(fraction: float) -> Depth:
    if fraction < 1 / 3:
        return "anterior"
    return "middle" if fraction < 2 / 3 else "posterior"


def locate(
    centroid: tuple[float, float, float],
    side: Literal["L", "R"],
    landmarks: BreastLandmarks,
    spacing: tuple[float, float, float],
    central_radius_mm: float,
) -> MriLocation:
    """The location of a centroid (slice, row, column voxels) in the breast ``side``."""
    z, y, x = _to_mm(centroid, spacing)
    nz, ny, nx = landmarks.nipple_mm
    up, towards_left = float(z - nz), float(x - nx)  # reader's right = patient's left
    radius = math.hypot(up, towards_left)
    central = radius < central_radius_mm
    angle = math.degrees(math.atan2(towards_left, up)) % 360.0  # clockwise from 12
    hour = round(angle / 30.0) % 12 or 12
    outer = towards_left < 0 if side == "R" else towards_left > 0
    quadrant = _QUADRANTS[(up >= 0, outer)]
    span = max(landmarks.chest_wall_y_mm - ny, 1e-6)
    fraction = min(max(float(y - ny) / span, 0.0), 1.0)
    distance = math.dist((float(z), float(y), float(x)), landmarks.nipple_mm)
    return MriLocation(
        clock_hour=None if central else hour,
        quadrant=quadrant,
        central=central,
        depth=_depth(fraction),
        distance_from_nipple_mm=round(distance, 1),
    )
