"""Kinetic analysis of a DCE breast MRI: enhancement maps, curve types and lesion candidates.

Definitions (BI-RADS MRI lexicon, 2013; the thresholds are :class:`KineticSettings`):

- S0 is the pre-contrast signal, S_early the highest signal of the early phases (those
  within ``early_window_s`` after the pre-contrast phase; the first post-contrast phase
  when no times are known), S_late the signal of the last phase.
- Percent initial enhancement PE = 100 (S_early - S0) / S0.
- Signal enhancement ratio SER = (S_early - S0) / (S_late - S0).
- Delayed-phase change D = 100 (S_late - S_early) / S_early; the curve is *persistent*
  when D > +10 %, *washout* when D < -10 %, *plateau* in between. Only voxels whose PE
  reaches ``enhancement_threshold_percent`` get a curve type.
- Lesion candidates are connected (6-neighbour) enhancing voxels inside the breast mask,
  at least ``min_volume_mm3``. Their score is the rule of :mod:`node.mri.scoring`, a
  heuristic in [0, 1] (washout > plateau > persistent, rising with enhancement), NOT a
  probability of malignancy: no labelled breast MRI exists here to calibrate one. Each is
  placed by clock face, quadrant, depth and nipple distance (:mod:`node.mri.location`).

The breast mask is the body (pre-contrast signal above a fraction of its 99th percentile)
in front of the chest wall, found per slice as the first row (from anterior) where the body
covers most of the width; everything behind it (pectoral muscle, heart) is excluded. This
expects the canonical prone axial geometry (rows to the patient's left, columns posterior).
The motion check phase-correlates the pre-contrast and first post-contrast phases' mean
projections over slices: an in-plane shift above ``motion_threshold_mm`` is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from node.errors import InvalidInput
from node.mri.assembly import DceExam
from node.mri.location import MriLocation, Quadrant, breast_landmarks, locate
from node.mri.phantom import CURVE_CODES, CurveType
from node.mri.scoring import RULE_SCORER, KineticFeatures, KineticScorer

__all__ = [
    "CURVE_NAMES",
    "KineticResult",
    "KineticSettings",
    "LesionCandidate",
    "MotionCheck",
    "analyse",
    "analyse_volumes",
    "breast_mask",
    "early_phases",
    "motion_check",
    "rescored",
]

CURVE_NAMES: Final[dict[int, CurveType]] = {v: k for k, v in CURVE_CODES.items()}
_CANONICAL_AXIAL: Final = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True)
class KineticSettings:
    """The analysis's thresholds; each checked when built."""

    enhancement_threshold_percent: float = 70.0  # PE at or above which a voxel enhances
    persistent_above_percent: float = 10.0  # delayed change D > this: persistent
    washout_below_percent: float = -10.0  # D < this: washout
    early_window_s: float = 120.0  # post-contrast phases this soon count as early
    min_volume_mm3: float = 30.0  # smaller enhancing regions are not candidates
    motion_threshold_mm: float = 2.0  # in-plane shift pre vs first post flagged above this
    body_fraction: float = 0.15  # body = pre signal above this fraction of its 99th percentile
    chest_wall_coverage: float = 0.85  # first row where the body spans this much of the width
    chest_wall_margin_mm: float = 5.0  # excluded in front of that row too
    min_signal_fraction: float = 0.05  # PE undefined below this fraction of the 99th percentile
    central_radius_mm: float = 10.0  # this close to the nipple's axis: "central", no clock hour

    def __post_init__(self) -> None:
        if self.enhancement_threshold_percent <= 0:
            raise ValueError("enhancement_threshold_percent must be > 0")
        if not self.washout_below_percent < 0 < self.persistent_above_percent:
            raise ValueError("need washout_below_percent < 0 < persistent_above_percent")
        if self.early_window_s <= 0 or self.min_volume_mm3 < 0 or self.motion_threshold_mm <= 0:
            raise ValueError("early_window_s and motion_threshold_mm must be > 0, min_volume >= 0")
        if self.central_radius_mm < 0:
            raise ValueError("central_radius_mm must be >= 0")
        for name in ("body_fraction", "chest_wall_coverage", "min_signal_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in (0, 1)")


@dataclass(frozen=True)
class MotionCheck:
    """In-plane shift of the first post-contrast phase against the pre-contrast one."""

    shift_mm: tuple[float, float]  # (rows, columns)
    magnitude_mm: float
    flagged: bool


@dataclass(frozen=True)
class LesionCandidate:
    """One connected enhancing region (numbered from 1 in the label volume)."""

    number: int
    voxels: int
    volume_mm3: float
    max_enhancement_percent: float
    mean_ser: float
    curve: CurveType
    curve_fractions: dict[CurveType, float]
    score: float
    centroid: tuple[float, float, float]  # (slice, row, column), voxels
    laterality: Literal["L", "R"]
    quadrant: Quadrant  # from the nipple (node/mri/location.py), as the clock face
    slices: tuple[int, ...]  # slice indices the region touches
    location: MriLocation
    enhancement_curve: tuple[float, ...]  # mean percent enhancement of its voxels, per phase

    @property
    def features(self) -> KineticFeatures:
        """What a scorer (node/mri/scoring.py) sees of this candidate."""
        return KineticFeatures(
            curve=self.curve,
            curve_fractions=self.curve_fractions,
            max_enhancement_percent=self.max_enhancement_percent,
            mean_ser=self.mean_ser,
            volume_mm3=self.volume_mm3,
        )


@dataclass
class KineticResult:
    """Maps (slices, rows, columns), the candidates and the motion check."""

    enhancement: npt.NDArray[np.float32]  # PE, percent; 0 outside the breast
    ser: npt.NDArray[np.float32]
    curve: npt.NDArray[np.uint8]  # CURVE_CODES; 0 not enhancing or outside the breast
    breast: npt.NDArray[np.bool_]
    labels: npt.NDArray[np.int32]  # candidate number per voxel, 0 elsewhere
    candidates: list[LesionCandidate]
    motion: MotionCheck
    settings: KineticSettings = field(default_factory=KineticSettings)
    times_s: tuple[float | None, ...] = ()  # of each phase after the pre-contrast one


def motion_check(
    pre: npt.NDArray[np.float32],
    post: npt.NDArray[np.float32],
    spacing_mm: tuple[float, float],
    threshold_mm: float,
) -> MotionCheck:
    """Phase correlation of the mean projections over slices (integer-pixel shift)."""
    a, b = pre.mean(axis=0), post.mean(axis=0)
    cross = np.fft.fft2(a - a.mean()) * np.conj(np.fft.fft2(b - b.mean()))
    cross /= np.maximum(np.abs(cross), 1e-12)
    peak = np.unravel_index(int(np.argmax(np.abs(np.fft.ifft2(cross)))), a.shape)
    shift = [(-p if p <= n // 2 else n - p) for p, n in zip(peak, a.shape, strict=True)]
    mm = (float(shift[0] * spacing_mm[0]), float(shift[1] * spacing_mm[1]))
    magnitude = float(np.hypot(*mm))
    return MotionCheck(shift_mm=mm, magnitude_mm=magnitude, flagged=magnitude > threshold_mm)


def breast_mask(
    pre: npt.NDArray[np.float32], row_spacing_mm: float, settings: KineticSettings
) -> npt.NDArray[np.bool_]:
    """The body in front of the chest wall (see the module docstring)."""
    body = pre > settings.body_fraction * float(np.percentile(pre, 99))
    coverage = body.mean(axis=2)  # (slices, rows)
    reached = coverage >= settings.chest_wall_coverage
    has_wall = reached.any(axis=1)
    if not has_wall.any():
        raise InvalidInput(
            "no chest wall found (no row where the body spans the width): the kinetic "
            "analysis needs axial slices of a prone patient"
        )
    walls = np.where(has_wall, reached.argmax(axis=1), 0)
    walls[~has_wall] = int(np.median(walls[has_wall]))
    limit = walls - round(settings.chest_wall_margin_mm / row_spacing_mm)
    rows = np.arange(pre.shape[1])[np.newaxis, :, np.newaxis]
    return body & (rows < limit[:, np.newaxis, np.newaxis])


def early_phases(times: Sequence[float | None], settings: KineticSettings) -> list[int]:
    """Indices of the early post-contrast phases (the first post-contrast one when no times)."""
    if any(t is None for t in times):
        return [1]
    early = [k for k in range(1, len(times)) if float(times[k]) <= settings.early_window_s]  # type: ignore[arg-type]
    return early or [1]


def _maps(
    phases: list[npt.NDArray[np.float32]],
    early: list[int],
    mask: npt.NDArray[np.bool_],
    settings: KineticSettings,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    pre, late = phases[0], phases[-1]
    floor = settings.min_signal_fraction * float(np.percentile(pre, 99))
    peak = np.max(np.stack([phases[k] for k in early]), axis=0) if len(early) > 1 else phases[1]
    valid = mask & (pre > floor)
    safe_pre = np.where(valid, pre, 1.0)
    enhancement = np.where(valid, 100.0 * (peak - pre) / safe_pre, 0.0).astype(np.float32)
    rise_late = late - pre
    ser = np.where(valid & (rise_late > 0), (peak - pre) / np.where(rise_late > 0, rise_late, 1), 0)
    delayed = 100.0 * (late - peak) / np.where(peak > 0, peak, 1.0)
    curve = np.zeros(pre.shape, dtype=np.uint8)
    enhancing = valid & (enhancement >= settings.enhancement_threshold_percent)
    curve[enhancing] = CURVE_CODES["plateau"]
    curve[enhancing & (delayed > settings.persistent_above_percent)] = CURVE_CODES["persistent"]
    curve[enhancing & (delayed < settings.washout_below_percent)] = CURVE_CODES["washout"]
    return enhancement, ser.astype(np.float32), curve


def _roi_curve(
    phases: list[npt.NDArray[np.float32]], where: tuple[slice, ...], inside: npt.NDArray[np.bool_]
) -> tuple[float, ...]:
    """Percent enhancement of the region's mean signal at each phase (a reader's ROI curve)."""
    means = [float(p[where][inside].mean()) for p in phases]
    base = means[0] if means[0] > 0 else 1.0
    return tuple(round(100.0 * (m - means[0]) / base, 2) for m in means)


def _candidates(
    phases: list[npt.NDArray[np.float32]],
    result_maps: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.uint8]],
    mask: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    settings: KineticSettings,
) -> tuple[npt.NDArray[np.int32], list[LesionCandidate]]:
    enhancement, ser, curve = result_maps
    labels, _ = ndimage.label(curve > 0)
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
    midline = mask.shape[2] / 2 if not mask.any() else float(np.nonzero(mask)[2].mean())
    landmarks = breast_landmarks(mask, midline, spacing)
    out = np.zeros(labels.shape, dtype=np.int32)
    found: list[LesionCandidate] = []
    for region, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        inside = labels[where] == region
        voxels = int(inside.sum())
        if voxels * voxel_mm3 < settings.min_volume_mm3:
            continue
        codes = curve[where][inside]
        fractions: dict[CurveType, float] = {
            name: float(np.mean(codes == c)) for c, name in CURVE_NAMES.items()
        }
        majority: CurveType = max(fractions, key=lambda n: fractions[n])
        peak_pe = float(enhancement[where][inside].max())
        index = np.argwhere(inside) + [s.start for s in where]
        centroid = (*(float(v) for v in index.mean(axis=0)),)
        side: Literal["L", "R"] = "R" if centroid[2] < midline else "L"
        location = locate(
            (centroid[0], centroid[1], centroid[2]),
            side,
            landmarks[side],  # the candidate lies in the mask, so its side has landmarks
            spacing,
            settings.central_radius_mm,
        )
        features = KineticFeatures(
            curve=majority,
            curve_fractions=fractions,
            max_enhancement_percent=round(peak_pe, 3),
            mean_ser=round(float(ser[where][inside].mean()), 4),
            volume_mm3=round(voxels * voxel_mm3, 3),
        )
        number = len(found) + 1
        out[where][inside] = number
        found.append(
            LesionCandidate(
                number=number,
                voxels=voxels,
                volume_mm3=features.volume_mm3,
                max_enhancement_percent=features.max_enhancement_percent,
                mean_ser=features.mean_ser,
                curve=majority,
                curve_fractions=fractions,
                score=RULE_SCORER.score(features),
                centroid=(centroid[0], centroid[1], centroid[2]),
                laterality=side,
                quadrant=location.quadrant,
                slices=tuple(sorted({int(i) for i in index[:, 0]})),
                location=location,
                enhancement_curve=_roi_curve(phases, where, inside),
            )
        )
    return out, found


def analyse_volumes(
    phases: list[npt.NDArray[np.float32]],
    times_s: list[float | None],
    spacing_mm: tuple[float, float, float],
    settings: KineticSettings | None = None,
) -> KineticResult:
    """Analyse phases (pre first) of (slices, rows, columns) with spacing (slice, row, column)."""
    settings = settings or KineticSettings()
    if len(phases) < 3 or len(times_s) != len(phases):
        raise InvalidInput("kinetic analysis needs >= 3 phases (pre, early, delayed) with times")
    if len({p.shape for p in phases}) != 1:
        raise InvalidInput("DCE phases differ in shape: they cannot be compared voxel by voxel")
    motion = motion_check(phases[0], phases[1], spacing_mm[1:], settings.motion_threshold_mm)
    mask = breast_mask(phases[0], spacing_mm[1], settings)
    maps = _maps(phases, early_phases(times_s, settings), mask, settings)
    labels, candidates = _candidates(phases, maps, mask, spacing_mm, settings)
    return KineticResult(*maps, mask, labels, candidates, motion, settings, tuple(times_s))


def analyse(exam: DceExam, settings: KineticSettings | None = None) -> KineticResult:
    """Analyse an assembled DCE exam (canonical axial geometry only, see the docstring)."""
    orientation = exam.orientation
    if not np.allclose(orientation, _CANONICAL_AXIAL, atol=1e-3):
        raise InvalidInput(
            f"Image Orientation Patient {orientation}: the kinetic analysis reads axial slices "
            "with rows to the patient's left and columns posterior (1, 0, 0, 0, 1, 0) only"
        )
    row, column = exam.pixel_spacing_mm
    return analyse_volumes(
        [p.volume() for p in exam.phases],
        [p.time_s for p in exam.phases],
        (exam.slice_spacing_mm, row, column),
        settings,
    )


def rescored(result: KineticResult, scorer: KineticScorer) -> KineticResult:
    """``result`` with every candidate scored by ``scorer`` instead of the rule."""
    candidates = [replace(c, score=scorer.score(c.features)) for c in result.candidates]
    return replace(result, candidates=candidates)
