"""Where a finding lies in the breast, as a reader says it: clock face, quadrant, depth.

Pixel positions mean nothing to a radiologist. Mammography reports place a lesion by the
clock face (as the reader faces the patient), the quadrant, the depth (anterior, middle,
posterior third of the breast) and the distance from the nipple (ACR BI-RADS Atlas, 5th
edition, "Location of lesion"). The node derives them from each image alone:

- chest-wall side: the image edge the breast is attached to. Patient Orientation's row
  direction says it when present (PS3.3 C.7.6.1.1.1: "A" towards the nipple means the
  chest wall is on the left edge, "P" on the right); otherwise the brighter (denser) of the
  two outer bands of the presentation pixels, since the breast spreads from the chest wall;
- nipple: the breast pixel (presentation value above a fraction of the image's range)
  farthest from the chest-wall edge, at the middle row of the tissue reaching that far;
- depth: a finding's distance from the nipple along the rows, as a fraction of the
  nipple-to-chest-wall distance (the posterior nipple line, approximated as horizontal);
  in mm when the image states its Imager Pixel Spacing (PS3.3 10.7.1.3);
- side of the nipple: above or below the nipple row. On a CC view that is lateral or
  medial (the image's column direction says which; by convention lateral is up), on an
  MLO view superior or inferior (up is superior). One view gives one axis; a lesion seen
  on CC and MLO (:mod:`node.writers.matching`) gives both, hence a quadrant and a clock
  hour. For the right breast 9 o'clock is lateral, for the left breast 3 o'clock.

These are estimates from pixels, not measurements; the writers say "approximately".
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from node.dicom.pixels import presentation_pixels
from node.domain import Finding

__all__ = [
    "BreastGeometry",
    "Depth",
    "Placement",
    "breast_geometry",
    "clock_hour",
    "place",
    "quadrant",
]

Depth = Literal["anterior", "middle", "posterior"]
_TISSUE: Final = 0.12  # presentation value above which a pixel is breast, not background
_BAND: Final = 0.1  # outer fraction of the columns compared for the chest-wall side
_STRIDE_TARGET: Final = 256  # rows of the sampled image the geometry is estimated on
_CACHE: OrderedDict[tuple[str, int, int], BreastGeometry] = OrderedDict()
_CACHE_SIZE: Final = 64


@dataclass(frozen=True)
class BreastGeometry:
    """Where the chest wall and the nipple are on one image, in its pixel coordinates."""

    chest_wall_column: float  # 0 (left edge) or Columns (right edge)
    nipple_column: float
    nipple_row: float
    lateral_up: bool  # on a CC view: the upper half of the image is the lateral side
    mm_per_pixel: float | None  # along the rows, from Imager Pixel Spacing

    @property
    def nipple_to_chest_wall(self) -> float:
        return max(abs(self.nipple_column - self.chest_wall_column), 1.0)

    def distance_from_nipple(self, finding: Finding) -> float:
        """Pixels from the nipple to the finding's centre."""
        return math.hypot(finding.column - self.nipple_column, finding.row - self.nipple_row)

    def depth_fraction(self, finding: Finding) -> float:
        """0 at the nipple, 1 at the chest wall, along the posterior nipple line."""
        along = abs(finding.column - self.nipple_column)
        return float(min(max(along / self.nipple_to_chest_wall, 0.0), 1.0))


def _row_direction(ds: Dataset) -> str:
    orientation = ds.get("PatientOrientation")
    if orientation and len(orientation) == 2 and str(orientation[0]):
        return str(orientation[0])[0]
    return ""


def _lateral_up(ds: Dataset, laterality: str) -> bool:
    """CC view: lateral up unless the column direction says the image is flipped."""
    orientation = ds.get("PatientOrientation")
    if not orientation or len(orientation) != 2 or not str(orientation[1]):
        return True  # the convention (PS3.17 mammography hanging; IHE MAMMO)
    downward = str(orientation[1])[0]  # towards the patient's L or R at the bottom
    medial_down = {"R": "L", "L": "R"}[laterality]  # medial of R breast is towards patient L
    return downward == medial_down


def breast_geometry(
    ds: Dataset, laterality: str, pixels: npt.NDArray[np.float32] | None = None
) -> BreastGeometry:
    """Estimate chest-wall side and nipple of one image (cached by SOP Instance UID), from
    its presentation ``pixels`` when the caller has them."""
    key = (str(ds.SOPInstanceUID), int(ds.Rows), int(ds.Columns))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    if pixels is None:
        pixels = presentation_pixels(ds)
    stride = max(1, int(ds.Rows) // _STRIDE_TARGET)
    small = np.asarray(pixels[::stride, ::stride], dtype=np.float32)
    del pixels
    tissue = small > (float(small.min()) + _TISSUE * float(np.ptp(small) or 1.0))
    band = max(1, int(small.shape[1] * _BAND))
    direction = _row_direction(ds)
    if direction in ("A", "P"):
        chest_wall_left = direction == "A"  # towards the nipple is to the right
    else:
        chest_wall_left = float(small[:, :band].mean()) >= float(small[:, -band:].mean())
    columns_with_tissue = np.flatnonzero(tissue.any(axis=0))
    width = small.shape[1]
    if columns_with_tissue.size == 0:
        far = width - 1 if chest_wall_left else 0
        rows_there = np.arange(small.shape[0])
    else:
        far = int(columns_with_tissue.max() if chest_wall_left else columns_with_tissue.min())
        reach = max(1, int(width * 0.02))
        span = slice(max(far - reach, 0), far + 1) if chest_wall_left else slice(far, far + reach)
        rows_there = np.flatnonzero(tissue[:, span].any(axis=1))
        if rows_there.size == 0:
            rows_there = np.arange(small.shape[0])
    spacing = ds.get("ImagerPixelSpacing") or ds.get("PixelSpacing")
    geometry = BreastGeometry(
        chest_wall_column=0.0 if chest_wall_left else float(ds.Columns),
        nipple_column=float((far + 0.5) * stride),
        nipple_row=float((np.median(rows_there) + 0.5) * stride),
        lateral_up=_lateral_up(ds, laterality),
        mm_per_pixel=float(spacing[1]) if spacing else None,
    )
    _CACHE[key] = geometry
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return geometry


@dataclass(frozen=True)
class Placement:
    """A finding's place in its breast. Offsets are from the nipple, in units of the
    nipple-to-chest-wall distance; None when no view shows that axis."""

    depth: Depth
    distance_from_nipple_mm: float | None
    superior: float | None  # > 0 above the nipple (from the MLO view)
    lateral: float | None  # > 0 lateral to the nipple (from the CC view)


def _depth(fraction: float) -> Depth:
    if fraction < 1 / 3:
        return "anterior"
    return "middle" if fraction < 2 / 3 else "posterior"


def offset_from_nipple(geometry: BreastGeometry, finding: Finding, view: str) -> tuple[str, float]:
    """("superior", +0.2) for an MLO finding above the nipple; ("lateral", ...) on a CC view."""
    up = (geometry.nipple_row - finding.row) / geometry.nipple_to_chest_wall
    if view.startswith("CC") or view in ("XCCL", "XCCM"):
        return "lateral", up if geometry.lateral_up else -up
    return "superior", up


def place(views: list[tuple[BreastGeometry, Finding, str]]) -> Placement:
    """Combine the views of one lesion (one or two): depth and nipple distance averaged."""
    fractions = [g.depth_fraction(f) for g, f, _ in views]
    distances = [g.distance_from_nipple(f) * g.mm_per_pixel for g, f, _ in views if g.mm_per_pixel]
    axes: dict[str, float] = {}
    for geometry, finding, view in views:
        axis, value = offset_from_nipple(geometry, finding, view)
        axes.setdefault(axis, value)
    return Placement(
        depth=_depth(sum(fractions) / len(fractions)),
        distance_from_nipple_mm=round(sum(distances) / len(distances)) if distances else None,
        superior=axes.get("superior"),
        lateral=axes.get("lateral"),
    )


def quadrant(placement: Placement) -> str | None:
    """ "upper outer" ... "lower inner" when both axes are known, else None."""
    if placement.superior is None or placement.lateral is None:
        return None
    vertical = "upper" if placement.superior >= 0 else "lower"
    horizontal = "outer" if placement.lateral >= 0 else "inner"
    return f"{vertical} {horizontal}"


def clock_hour(placement: Placement, laterality: str) -> int | None:
    """The clock hour (1-12) as the reader faces the patient, when both axes are known."""
    if placement.superior is None or placement.lateral is None:
        return None
    # Facing the patient, her right breast's lateral side is on the reader's left (9 o'clock),
    # her left breast's lateral side on the reader's right (3 o'clock).
    x = -placement.lateral if laterality == "R" else placement.lateral
    angle = math.degrees(math.atan2(x, placement.superior)) % 360.0  # clockwise from 12
    hour = round(angle / 30.0) % 12
    return 12 if hour == 0 else hour
