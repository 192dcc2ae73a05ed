"""A synthetic dynamic contrast-enhanced (DCE) breast MRI phantom with known kinetics.

No labelled breast MRI ships with the node, so the kinetic analysis is tested on a phantom
whose truth is known voxel by voxel: two breasts (fat and fibroglandular tissue) in front
of the chest wall, the heart behind it (which enhances and washes out, and must be
excluded), and lesions whose delayed-phase curves are persistent, plateau or washout
(BI-RADS MRI lexicon). Noise and patient motion between phases are optional.

Array order is (slices, rows, columns) in the canonical prone axial geometry the synthetic
headers state: rows run posterior (+y), columns to the patient's left (+x), slices upward
(+z), so row 0 is anterior and column 0 is the patient's right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "CURVE_CODES",
    "CurveType",
    "DcePhantom",
    "PhantomLesion",
    "default_lesions",
    "enhancement_curve",
    "make_dce_phantom",
]

CurveType = Literal["persistent", "plateau", "washout"]
# Values of the per-voxel curve-type map (0: not enhancing or outside the breast).
CURVE_CODES: Final[dict[CurveType, int]] = {"persistent": 1, "plateau": 2, "washout": 3}

BITS_STORED: Final = 12
_FAT: Final = 300.0  # pre-contrast signal of (partly suppressed) fat
_GLAND: Final = 500.0  # fibroglandular tissue and lesions
_MUSCLE: Final = 400.0
_BLOOD: Final = 350.0
_EARLY_S: Final = 120.0  # end of the early (initial) phase: peak of every lesion curve


@dataclass(frozen=True)
class PhantomLesion:
    """One enhancing lesion: a sphere with a known curve type."""

    curve: CurveType
    centre: tuple[float, float, float]  # (slice, row, column), voxels
    radius_mm: float
    initial_enhancement: float = 1.5  # relative signal rise at the early peak (1.5 = 150 %)


@dataclass
class DcePhantom:
    """The phases (pre first), their times, and the truth the analysis must recover."""

    phases: npt.NDArray[np.uint16]  # (phases, slices, rows, columns)
    times_s: tuple[float, ...]  # acquisition time of each phase after the pre-contrast one
    pixel_spacing_mm: float
    slice_thickness_mm: float
    lesions: tuple[PhantomLesion, ...]
    labels: npt.NDArray[np.int16]  # 0 background, i + 1 inside lesion i
    breast: npt.NDArray[np.bool_]
    t2: npt.NDArray[np.uint16] = field(repr=False)  # a T2-weighted volume (to be ignored)

    @property
    def voxel_curve(self) -> npt.NDArray[np.uint8]:
        """The true curve-type code (:data:`CURVE_CODES`) of every lesion voxel, 0 elsewhere."""
        codes = np.zeros(self.labels.shape, dtype=np.uint8)
        for index, lesion in enumerate(self.lesions):
            codes[self.labels == index + 1] = CURVE_CODES[lesion.curve]
        return codes


def enhancement_curve(curve: CurveType, amplitude: float, time_s: float) -> float:
    """Relative enhancement at ``time_s``: a rise to ``amplitude`` by 120 s, then the
    delayed phase: persistent keeps rising, plateau stays, washout falls (by 180 s after
    the peak: +30 %, 0, -40 % of the amplitude; at 150 % that is +18 %, 0, -24 % of signal
    from the early peak, well clear of the +-10 % lexicon thresholds)."""
    if time_s <= 0:
        return 0.0
    if time_s <= _EARLY_S:
        return amplitude * time_s / _EARLY_S
    late = (time_s - _EARLY_S) / 180.0
    slope = {"persistent": 0.3, "plateau": 0.0, "washout": -0.4}[curve]
    return amplitude * (1.0 + slope * late)


def default_lesions(slices: int, rows: int, columns: int) -> tuple[PhantomLesion, ...]:
    """One lesion of each curve type, in different breasts and quadrants."""
    mid = (slices - 1) / 2
    front = 0.30 * rows
    return (
        PhantomLesion("persistent", (mid + 0.15 * slices, front, 0.20 * columns), 9.0),
        PhantomLesion("plateau", (mid - 0.15 * slices, front, 0.68 * columns), 8.0),
        PhantomLesion("washout", (mid + 0.15 * slices, front, 0.80 * columns), 8.0),
    )


def _anatomy(
    shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[dict[str, npt.NDArray[np.bool_]], npt.NDArray[np.bool_]]:
    slices, rows, columns = shape
    z, r, c = np.ogrid[:slices, :rows, :columns]
    wall = 0.5 * rows
    breast = np.zeros(shape, dtype=bool)
    for centre in (0.27 * columns, 0.73 * columns):
        breast |= (
            ((c - centre) / (0.19 * columns)) ** 2
            + ((r - wall) / (0.38 * rows)) ** 2
            + ((z - (slices - 1) / 2) / (0.48 * slices)) ** 2
            <= 1.0
        ) & (r < wall)
    torso = (
        ((c - columns / 2) / (0.49 * columns)) ** 2 + ((r - wall) / (0.45 * rows)) ** 2 <= 1
    ) & (r >= wall)
    torso = np.broadcast_to(torso, shape)
    muscle = torso & (r < wall + 0.06 * rows)
    heart = (
        ((c - 0.55 * columns) / (0.14 * columns)) ** 2 + ((r - 0.75 * rows) / (0.12 * rows)) ** 2
        <= 1
    ) & np.broadcast_to(True, shape)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    gland = breast & (texture > np.quantile(texture[breast], 0.7))
    tissue = {"breast": breast, "torso": torso, "muscle": muscle, "heart": heart, "gland": gland}
    return tissue, breast


def make_dce_phantom(
    *,
    seed: int = 1,
    slices: int = 24,
    rows: int = 96,
    columns: int = 128,
    post_phases: int = 5,
    phase_interval_s: float = 60.0,
    pixel_spacing_mm: float = 2.5,
    slice_thickness_mm: float = 3.0,
    noise: float = 0.02,
    motion_px: tuple[int, int] = (0, 0),
    lesions: tuple[PhantomLesion, ...] | None = None,
) -> DcePhantom:
    """Build the phantom; ``motion_px`` (rows, columns) shifts every post-contrast phase,
    ``noise`` is the Gaussian noise's standard deviation relative to glandular signal."""
    if post_phases < 2:
        raise ValueError("a curve type needs at least 2 post-contrast phases (early and delayed)")
    if min(slices, rows, columns) < 8:
        raise ValueError("the phantom needs at least 8 voxels along each axis")
    rng = np.random.default_rng(seed)
    shape = (slices, rows, columns)
    tissue, breast = _anatomy(shape, rng)
    lesions = default_lesions(*shape) if lesions is None else lesions
    z, r, c = np.ogrid[:slices, :rows, :columns]
    labels = np.zeros(shape, dtype=np.int16)
    for index, lesion in enumerate(lesions):
        dz, dr, dc = (
            (z - lesion.centre[0]) * slice_thickness_mm,
            (r - lesion.centre[1]) * pixel_spacing_mm,
            (c - lesion.centre[2]) * pixel_spacing_mm,
        )
        labels[(dz**2 + dr**2 + dc**2 <= lesion.radius_mm**2) & breast] = index + 1
    times = tuple(phase_interval_s * k for k in range(post_phases + 1))
    phases = np.empty((len(times), *shape), dtype=np.uint16)
    base = np.zeros(shape, dtype=np.float32)
    base[tissue["breast"]] = _FAT
    base[tissue["gland"]] = _GLAND
    base[tissue["torso"]] = _MUSCLE
    base[tissue["heart"]] = _BLOOD
    base[labels > 0] = _GLAND
    for k, t in enumerate(times):
        relative = np.zeros(shape, dtype=np.float32)
        relative[tissue["breast"]] = 0.03 * min(t / 300.0, 1.0)  # fat: barely
        relative[tissue["gland"]] = enhancement_curve("persistent", 0.15, t)  # background BPE
        relative[tissue["muscle"]] = enhancement_curve("persistent", 0.4, t)
        relative[tissue["heart"]] = enhancement_curve("washout", 2.5, t)  # blood pool
        for index, lesion in enumerate(lesions):
            relative[labels == index + 1] = enhancement_curve(
                lesion.curve, lesion.initial_enhancement, t
            )
        signal = base * (1.0 + relative)
        signal += rng.normal(0.0, noise * _GLAND, shape).astype(np.float32)
        if k > 0 and motion_px != (0, 0):
            signal = np.roll(signal, motion_px, axis=(1, 2))
        phases[k] = np.clip(np.abs(signal), 0, (1 << BITS_STORED) - 1).astype(np.uint16)
    t2 = np.where(tissue["gland"], 900.0, base)  # water-rich gland bright on T2
    return DcePhantom(
        phases=phases,
        times_s=times,
        pixel_spacing_mm=pixel_spacing_mm,
        slice_thickness_mm=slice_thickness_mm,
        lesions=lesions,
        labels=labels,
        breast=breast,
        t2=t2.astype(np.uint16),
    )
