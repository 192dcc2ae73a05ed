"""Assemble the DCE time series of a breast MRI study from its classic MR images.

A study holds more than the dynamic series: T2-weighted and diffusion series, and the
subtraction images a scanner derives from the phases. Each series is either part of the DCE
time series or ignored with a recorded reason. The DCE images are grouped into phases by
Temporal Position Identifier (within a series, or one per series), and the phases ordered by
Temporal Position Identifier, then Trigger Time, then Acquisition Time, then Series Number;
the first is the pre-contrast phase. Phases that do not share one geometry (slice count,
positions, matrix, orientation, spacing) cannot be compared voxel by voxel: InvalidInput.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from node.errors import InvalidInput

__all__ = [
    "ENHANCED_MR_IMAGE_STORAGE",
    "MIN_PHASES",
    "MR_IMAGE_STORAGE",
    "DceExam",
    "DcePhase",
    "IgnoredSeries",
    "assemble_dce",
    "non_dce_reason",
]

MR_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.4.1"
MIN_PHASES: Final = 3  # pre-contrast, early and delayed post-contrast: a curve type needs three
_POSITION_TOLERANCE_MM: Final = 0.01
_NON_DCE_WORDS: Final = {
    "T2": "T2-weighted",
    "STIR": "STIR (T2-weighted)",
    "TSE": "turbo spin echo (T2-weighted)",
    "DWI": "diffusion-weighted",
    "DIFF": "diffusion-weighted",
    "ADC": "apparent diffusion coefficient map",
    "EP2D": "diffusion-weighted (EPI)",
}


@dataclass(frozen=True)
class IgnoredSeries:
    """A series left out of the kinetic analysis, and why."""

    SeriesInstanceUID: str
    SeriesDescription: str
    reason: str


@dataclass(frozen=True)
class DcePhase:
    """One time point: its slices in order along the slice normal, and its time."""

    slices: tuple[Dataset, ...]
    time_s: float | None  # seconds after the pre-contrast phase; None when no header gives it

    def volume(self) -> npt.NDArray[np.float32]:
        """The phase's pixels in (slices, rows, columns), rescaled to stored values."""
        return np.stack([_pixels(ds) for ds in self.slices]).astype(np.float32, copy=False)


@dataclass(frozen=True)
class DceExam:
    """The DCE time series of one study, pre-contrast first, and what was left out."""

    phases: tuple[DcePhase, ...]
    ignored: tuple[IgnoredSeries, ...]
    revision: int = 0  # n > 0: the n-th re-analysis after late images (new output UIDs)

    @property
    def pre(self) -> DcePhase:
        return self.phases[0]

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        row, column = (float(v) for v in self.pre.slices[0].PixelSpacing)
        return row, column

    @property
    def slice_spacing_mm(self) -> float:
        positions = _positions(self.pre.slices)
        if len(positions) > 1:
            return float(np.median(np.diff(positions)))
        return float(self.pre.slices[0].SliceThickness)

    @property
    def StudyInstanceUID(self) -> str:
        return str(self.pre.slices[0].StudyInstanceUID)


def _pixels(ds: Dataset) -> npt.NDArray[np.float32]:
    pixels = ds.pixel_array.astype(np.float32)
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    return pixels * slope + intercept if (slope, intercept) != (1.0, 0.0) else pixels


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if isinstance(value, str):
        return value.upper()
    return "\\".join(str(v) for v in value).upper()


def non_dce_reason(ds: Dataset) -> str | None:
    """Why a series (represented by ``ds``) is not part of the DCE time series, or None."""
    if str(ds.get("SOPClassUID", "")) == ENHANCED_MR_IMAGE_STORAGE:
        return "Enhanced MR Image Storage (multi-frame) is not assembled yet; classic MR only"
    if str(ds.get("SOPClassUID", "")) != MR_IMAGE_STORAGE or ds.get("Modality") != "MR":
        return f"not a classic MR image (SOP Class {ds.get('SOPClassUID', '?')})"
    image_type = [str(v).upper() for v in ds.get("ImageType", [])]
    if any(v in ("SUB", "SUBTRACTION") for v in image_type):
        return "subtraction series (ImageType SUB): derived from the phases, not a phase"
    if image_type[:1] == ["DERIVED"]:
        return "derived series (ImageType DERIVED): not an acquired phase"
    if "DiffusionBValue" in ds:
        return "diffusion-weighted (Diffusion b-value present)"
    for keyword in ("SeriesDescription", "SequenceName", "ScanningSequence"):
        text = _text(ds, keyword)
        for token in re.split(r"[^A-Z0-9*]+", text):
            for word, what in _NON_DCE_WORDS.items():
                if token.lstrip("*").startswith(word):
                    return f"{what} series ({keyword} {text!r}), not dynamic contrast-enhanced"
    if _text(ds, "ScanningSequence") == "SE" and float(ds.get("EchoTime", 0) or 0) > 30:
        return "spin echo with long TE (T2-weighted), not dynamic contrast-enhanced"
    return None


def _positions(slices: Sequence[Dataset]) -> list[float]:
    orientation = np.asarray(slices[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    return [float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))) for ds in slices]


def _seconds(value: object) -> float | None:
    text = str(value or "").strip()
    if len(text) < 6 or not text[:6].isdigit():
        return None
    return int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:])


def _order_key(slices: Sequence[Dataset]) -> tuple[float, float, float, float]:
    first = slices[0]
    inf = float("inf")
    temporal = first.get("TemporalPositionIdentifier")
    trigger = first.get("TriggerTime")
    acquired = _seconds(first.get("AcquisitionTime"))
    return (
        float(temporal) if temporal is not None else inf,
        float(trigger) if trigger not in (None, "") else inf,
        acquired if acquired is not None else inf,
        float(first.get("SeriesNumber") or inf),
    )


def _phase_times(groups: Sequence[Sequence[Dataset]]) -> list[float | None]:
    triggers = [g[0].get("TriggerTime") for g in groups]
    if all(t not in (None, "") for t in triggers) and len({float(t) for t in triggers}) == len(
        triggers
    ):
        return [(float(t) - float(triggers[0])) / 1000.0 for t in triggers]
    acquired = [_seconds(g[0].get("AcquisitionTime")) for g in groups]
    if all(a is not None for a in acquired) and len(set(acquired)) == len(acquired):
        return [float(a) - float(acquired[0]) for a in acquired]  # type: ignore[arg-type]
    return [None] * len(groups)


def _check_geometry(groups: Sequence[Sequence[Dataset]]) -> None:
    first = groups[0]
    reference = (
        len(first),
        int(first[0].Rows),
        int(first[0].Columns),
        tuple(round(float(v), 4) for v in first[0].ImageOrientationPatient),
        tuple(round(float(v), 4) for v in first[0].PixelSpacing),
    )
    positions = _positions(first)
    for number, group in enumerate(groups[1:], start=2):
        this = (
            len(group),
            int(group[0].Rows),
            int(group[0].Columns),
            tuple(round(float(v), 4) for v in group[0].ImageOrientationPatient),
            tuple(round(float(v), 4) for v in group[0].PixelSpacing),
        )
        if this != reference:
            raise InvalidInput(
                f"DCE phase {number} has (slices, rows, columns, orientation, spacing) {this}, "
                f"the pre-contrast phase {reference}: phases must share one geometry"
            )
        if not np.allclose(_positions(group), positions, atol=_POSITION_TOLERANCE_MM):
            raise InvalidInput(
                f"DCE phase {number} has its slices at other positions than the pre-contrast "
                "phase (Image Position Patient): phases must cover the same volume"
            )
    if len(set(np.round(positions, 3))) != len(positions):
        raise InvalidInput(
            "two slices of one DCE phase share a position: duplicated or mixed series"
        )


def _split_phases(series: Sequence[Dataset]) -> list[list[Dataset]]:
    by_position: dict[object, list[Dataset]] = defaultdict(list)
    for ds in series:
        by_position[ds.get("TemporalPositionIdentifier")].append(ds)
    return list(by_position.values())


def assemble_dce(datasets: Iterable[Dataset]) -> DceExam:
    """The DCE time series of ``datasets`` (one study), or InvalidInput with the reason."""
    series: dict[str, list[Dataset]] = defaultdict(list)
    for ds in datasets:
        series[str(ds.SeriesInstanceUID)].append(ds)
    if not series:
        raise InvalidInput("no MR images to assemble")
    studies = {str(ds.StudyInstanceUID) for s in series.values() for ds in s}
    if len(studies) != 1:
        raise InvalidInput(f"images of {len(studies)} studies given: a DCE exam is one study")
    ignored: list[IgnoredSeries] = []
    groups: list[list[Dataset]] = []
    for uid, images in series.items():
        reason = non_dce_reason(images[0])
        if reason is not None:
            ignored.append(IgnoredSeries(uid, str(images[0].get("SeriesDescription", "")), reason))
            continue
        groups.extend(_split_phases(images))
    if len(groups) < MIN_PHASES:
        raise InvalidInput(
            f"{len(groups)} DCE phase(s) found, at least {MIN_PHASES} needed (pre-contrast, "
            "early and delayed post-contrast) to tell a curve type; ignored: "
            + ("; ".join(f"{i.SeriesDescription}: {i.reason}" for i in ignored) or "none")
        )
    for group in groups:
        order = np.argsort(_positions(group))
        group[:] = [group[i] for i in order]
    groups.sort(key=_order_key)
    keys = [_order_key(g) for g in groups]
    if len(set(keys)) != len(keys):
        raise InvalidInput(
            "two DCE phases have the same Temporal Position Identifier, Trigger Time, "
            "Acquisition Time and Series Number: their order is unknown"
        )
    _check_geometry(groups)
    times = _phase_times(groups)
    phases = tuple(DcePhase(tuple(g), t) for g, t in zip(groups, times, strict=True))
    return DceExam(phases=phases, ignored=tuple(ignored))
