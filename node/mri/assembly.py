"""Assemble the DCE time series of a breast MRI study from its MR images, classic or enhanced.

A study holds more than the dynamic series: T2-weighted and diffusion series, and the
subtraction images a scanner derives from the phases. Each series is either part of the DCE
time series or ignored with a recorded reason. The DCE images are grouped into phases by
Temporal Position Identifier (within a series, or one per series), and the phases ordered by
Temporal Position Identifier, then Trigger Time, then Acquisition Time, then Series Number;
the first is the pre-contrast phase. Phases that do not share one geometry (slice count,
positions, matrix, orientation, spacing) cannot be compared voxel by voxel: InvalidInput.

Enhanced MR images (multi-frame: one object per phase, or one object of every phase) are read
frame by frame from their Functional Groups (node.mri.frames): Temporal Position Index (Frame
Content) splits and orders the phases, Temporal Position Time Offset and Frame Acquisition
DateTime time them, Plane Position / Orientation and Pixel Measures place the slices; the
same rules and checks then apply as to classic images.
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
from node.mri.frames import (
    ENHANCED_MR_IMAGE_STORAGE,
    SliceHeader,
    enhanced_slices,
    frame_header,
    is_multiframe,
    slice_pixels,
)

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
    """One time point: its slices in order along the slice normal, and its time.

    ``slices`` are the images that hold the slices: a classic image each, or an Enhanced MR
    image repeated for each of its frames, ``frames`` then giving the frame's number (1-based).
    """

    slices: tuple[Dataset, ...]
    time_s: float | None  # seconds after the pre-contrast phase; None when no header gives it
    frames: tuple[int, ...] = ()  # frame numbers in multi-frame images; () for classic images

    def frame(self, index: int) -> int | None:
        """The frame number of slice ``index`` in its multi-frame image, None if classic."""
        return self.frames[index] if self.frames else None

    def header(self, index: int) -> SliceHeader:
        return frame_header(self.slices[index], self.frame(index))

    def pixels(self, index: int) -> npt.NDArray[np.float32]:
        """Slice ``index``'s pixels, rescaled to stored values."""
        return slice_pixels(self.slices[index], self.frame(index))

    def volume(self) -> npt.NDArray[np.float32]:
        """The phase's pixels in (slices, rows, columns), rescaled to stored values."""
        return np.stack([self.pixels(i) for i in range(len(self.slices))]).astype(
            np.float32, copy=False
        )

    def reference(self, index: int) -> Dataset:
        """An Image SOP Instance Reference to slice ``index`` (with its Referenced Frame
        Number when it is a frame of a multi-frame image, PS3.3 C.10.2)."""
        source = self.slices[index]
        item = Dataset()
        item.ReferencedSOPClassUID = source.SOPClassUID
        item.ReferencedSOPInstanceUID = source.SOPInstanceUID
        frame = self.frame(index)
        if frame is not None:
            item.ReferencedFrameNumber = frame
        return item


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
    def orientation(self) -> tuple[float, ...]:
        """Image Orientation (Patient) shared by every slice (checked by the assembly)."""
        return self.pre.header(0).orientation

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        return self.pre.header(0).spacing

    @property
    def slice_spacing_mm(self) -> float:
        headers = [self.pre.header(i) for i in range(len(self.pre.slices))]
        positions = _positions(headers)
        if len(positions) > 1:
            return float(np.median(np.diff(positions)))
        return float(headers[0].thickness or 0.0)

    @property
    def StudyInstanceUID(self) -> str:
        return str(self.pre.slices[0].StudyInstanceUID)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if isinstance(value, str):
        return value.upper()
    return "\\".join(str(v) for v in value).upper()


def non_dce_reason(ds: Dataset) -> str | None:
    """Why a series (represented by ``ds``) is not part of the DCE time series, or None."""
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in (MR_IMAGE_STORAGE, ENHANCED_MR_IMAGE_STORAGE) or ds.get("Modality") != "MR":
        return f"not an MR image, classic or enhanced (SOP Class {ds.get('SOPClassUID', '?')})"
    image_type = [str(v).upper() for v in ds.get("ImageType", [])]
    if any(v in ("SUB", "SUBTRACTION") for v in image_type):
        return "subtraction series (ImageType SUB): derived from the phases, not a phase"
    if image_type[:1] == ["DERIVED"]:
        return "derived series (ImageType DERIVED): not an acquired phase"
    if "DiffusionBValue" in ds or _enhanced_b_value(ds) > 0:
        return "diffusion-weighted (Diffusion b-value present)"
    for keyword in ("SeriesDescription", "SequenceName", "PulseSequenceName", "ScanningSequence"):
        text = _text(ds, keyword)
        for token in re.split(r"[^A-Z0-9*]+", text):
            for word, what in _NON_DCE_WORDS.items():
                if token.lstrip("*").startswith(word):
                    return f"{what} series ({keyword} {text!r}), not dynamic contrast-enhanced"
    if _text(ds, "ScanningSequence") == "SE" and float(ds.get("EchoTime", 0) or 0) > 30:
        return "spin echo with long TE (T2-weighted), not dynamic contrast-enhanced"
    return None


def _enhanced_b_value(ds: Dataset) -> float:
    """The largest Diffusion b-value of an Enhanced MR image's MR Diffusion groups (0 if none)."""
    groups = [*ds.get("SharedFunctionalGroupsSequence", [])]
    groups += [*ds.get("PerFrameFunctionalGroupsSequence", [])][:1]
    values = [
        float(item.get("DiffusionBValue") or 0)
        for group in groups
        for item in group.get("MRDiffusionSequence", [])
    ]
    return max(values, default=0.0)


def _positions(slices: Sequence[SliceHeader]) -> list[float]:
    orientation = np.asarray(slices[0].orientation, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    return [float(np.dot(normal, np.asarray(h.position, float))) for h in slices]


def _order_key(slices: Sequence[SliceHeader]) -> tuple[float, float, float, float]:
    first = slices[0]
    inf = float("inf")
    number = first.dataset.get("SeriesNumber")
    return (
        first.temporal if first.temporal is not None else inf,
        first.trigger_ms if first.trigger_ms is not None else inf,
        first.acquired_s if first.acquired_s is not None else inf,
        float(number) if number not in (None, "") else inf,
    )


def _phase_times(groups: Sequence[Sequence[SliceHeader]]) -> list[float | None]:
    triggers = [t for g in groups if (t := g[0].trigger_ms) is not None]
    if len(triggers) == len(groups) and len(set(triggers)) == len(triggers):
        return [(t - triggers[0]) / 1000.0 for t in triggers]
    acquired = [a for g in groups if (a := g[0].acquired_s) is not None]
    if len(acquired) == len(groups) and len(set(acquired)) == len(acquired):
        return [a - acquired[0] for a in acquired]
    return [None] * len(groups)


def _geometry(group: Sequence[SliceHeader]) -> tuple[object, ...]:
    first = group[0]
    return (
        len(group),
        first.rows,
        first.columns,
        tuple(round(v, 4) for v in first.orientation),
        tuple(round(v, 4) for v in first.spacing),
    )


def _check_geometry(groups: Sequence[Sequence[SliceHeader]]) -> None:
    reference = _geometry(groups[0])
    positions = _positions(groups[0])
    for number, group in enumerate(groups, start=1):
        this = _geometry(group)
        if this != reference:
            raise InvalidInput(
                f"DCE phase {number} has (slices, rows, columns, orientation, spacing) {this}, "
                f"the pre-contrast phase {reference}: phases must share one geometry"
            )
        shared = {_geometry([h])[1:] for h in group}
        if len(shared) != 1:
            raise InvalidInput(
                f"the slices of DCE phase {number} differ in (rows, columns, orientation, "
                "spacing): a phase is one volume"
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


def _split_phases(series: Sequence[Dataset]) -> list[list[SliceHeader]]:
    by_position: dict[object, list[SliceHeader]] = defaultdict(list)
    for ds in series:
        headers = enhanced_slices(ds) if is_multiframe(ds) else [frame_header(ds, None)]
        for header in headers:
            by_position[header.sort_key].append(header)
    return list(by_position.values())


def _phase(group: Sequence[SliceHeader], time_s: float | None) -> DcePhase:
    frames = tuple(h.frame for h in group)
    if all(f is None for f in frames):
        return DcePhase(tuple(h.dataset for h in group), time_s)
    if any(f is None for f in frames):
        raise InvalidInput(
            "one DCE phase mixes classic MR images and Enhanced MR frames at one temporal "
            "position: duplicated or mixed series"
        )
    return DcePhase(tuple(h.dataset for h in group), time_s, tuple(f for f in frames if f))


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
    groups: list[list[SliceHeader]] = []
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
    phases = tuple(_phase(g, t) for g, t in zip(groups, times, strict=True))
    return DceExam(phases=phases, ignored=tuple(ignored))
