"""One slice of a DCE phase as the assembly reads it: a classic MR image or one frame of an
Enhanced MR image.

A classic image (PS3.3 A.4) carries its geometry and time in its top-level attributes. An
Enhanced MR image (A.36.2) carries them in Functional Groups, per frame or shared by all
frames (C.7.6.16): Plane Position (Patient), Plane Orientation (Patient), Pixel Measures,
Frame Content (Temporal Position Index, Frame Acquisition DateTime), Temporal Position (Time
Offset) and Pixel Value Transformation. :class:`SliceHeader` is the same reading of both, so
that phases are grouped, ordered and checked by one rule whatever the storage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from node.errors import InvalidInput

__all__ = [
    "ENHANCED_MR_IMAGE_STORAGE",
    "SliceHeader",
    "enhanced_slices",
    "frame_header",
    "is_multiframe",
    "slice_pixels",
]

ENHANCED_MR_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.4.1"


@dataclass(frozen=True)
class SliceHeader:
    """Geometry and time of one slice; ``frame`` is its 1-based number in a multi-frame
    image, None for a single-frame one."""

    dataset: Dataset
    frame: int | None
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    spacing: tuple[float, float]
    thickness: float | None
    rows: int
    columns: int
    temporal: float | None  # Temporal Position Identifier / Index
    trigger_ms: float | None  # Trigger Time, or the Temporal Position Time Offset in ms
    acquired_s: float | None  # time of day of the acquisition, seconds

    @property
    def sort_key(self) -> object:
        """What splits a series into phases: its temporal position; for a frame without
        one, its Temporal Position Time Offset, else its object (one object, one phase)."""
        if self.temporal is not None:
            return self.temporal
        if self.frame is None:
            return None
        if self.trigger_ms is not None:
            return (str(self.dataset.SOPInstanceUID), self.trigger_ms)
        return str(self.dataset.SOPInstanceUID)


def is_multiframe(ds: Dataset) -> bool:
    """True for an image with Per-frame Functional Groups (an enhanced, multi-frame image)."""
    return "PerFrameFunctionalGroupsSequence" in ds


def _seconds(value: object) -> float | None:
    text = str(value or "").strip()
    if len(text) < 6 or not text[:6].isdigit():
        return None
    return int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:])


def _number(value: object) -> float | None:
    return None if value is None or value == "" else float(str(value))


def _floats(value: object, count: int, what: str) -> tuple[float, ...]:
    """A multi-valued DS as floats, or InvalidInput when it has not ``count`` values."""
    values = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else []
    if len(values) != count:
        raise InvalidInput(f"{what} has {value!r}, {count} numbers expected")
    return tuple(float(str(v)) for v in values)


def _xyz(value: object, what: str) -> tuple[float, float, float]:
    x, y, z = _floats(value, 3, what)
    return x, y, z


def _group(ds: Dataset, frame: int, keyword: str) -> Dataset | None:
    """The functional group ``keyword`` of ``frame``: per-frame first, then shared."""
    per_frame = ds.PerFrameFunctionalGroupsSequence[frame - 1]
    if keyword in per_frame and per_frame[keyword].value:
        item: Dataset = per_frame[keyword].value[0]
        return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0] and shared[0][keyword].value:
        item = shared[0][keyword].value[0]
        return item
    return None


def _required(ds: Dataset, frame: int, keyword: str, attribute: str) -> object:
    group = _group(ds, frame, keyword)
    if group is None or attribute not in group:
        raise InvalidInput(
            f"Enhanced MR {ds.get('SOPInstanceUID', '?')} frame {frame} has no {attribute} in "
            f"{keyword} (per-frame or shared): its slices cannot be placed"
        )
    return group[attribute].value


def frame_header(ds: Dataset, frame: int | None) -> SliceHeader:
    """The reading of a classic image (``frame`` None) or of one frame of an enhanced one."""
    if frame is None:
        trigger = ds.get("TriggerTime")
        return SliceHeader(
            dataset=ds,
            frame=None,
            position=_xyz(ds.ImagePositionPatient, "Image Position (Patient)"),
            orientation=_floats(ds.ImageOrientationPatient, 6, "Image Orientation (Patient)"),
            spacing=(float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])),
            thickness=_number(ds.get("SliceThickness")),
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            temporal=_number(ds.get("TemporalPositionIdentifier")),
            trigger_ms=_number(trigger),
            acquired_s=_seconds(ds.get("AcquisitionTime")),
        )
    where = f"Enhanced MR frame {frame}"
    position = _required(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    orientation = _required(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    row, column = _floats(
        _required(ds, frame, "PixelMeasuresSequence", "PixelSpacing"), 2, f"{where} Pixel Spacing"
    )
    measures = _group(ds, frame, "PixelMeasuresSequence")
    content = _group(ds, frame, "FrameContentSequence")
    offset = _group(ds, frame, "TemporalPositionSequence")
    temporal = content.get("TemporalPositionIndex") if content is not None else None
    acquired = content.get("FrameAcquisitionDateTime") if content is not None else None
    trigger_ms = None
    if offset is not None and offset.get("TemporalPositionTimeOffset") not in (None, ""):
        trigger_ms = float(offset.TemporalPositionTimeOffset) * 1000.0
    return SliceHeader(
        dataset=ds,
        frame=frame,
        position=_xyz(position, f"{where} Image Position (Patient)"),
        orientation=_floats(orientation, 6, f"{where} Image Orientation (Patient)"),
        spacing=(row, column),
        thickness=_number(measures.get("SliceThickness") if measures is not None else None),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        temporal=_number(temporal)
        if temporal is not None
        else _number(ds.get("TemporalPositionIdentifier")),
        trigger_ms=trigger_ms,
        acquired_s=_seconds(str(acquired or "")[8:]) if acquired else None,
    )


def enhanced_slices(ds: Dataset) -> list[SliceHeader]:
    """Every frame of an Enhanced MR image, or InvalidInput when its frames cannot be placed."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if len(ds.PerFrameFunctionalGroupsSequence) != frames:
        raise InvalidInput(
            f"Enhanced MR {ds.get('SOPInstanceUID', '?')} has {frames} frames and "
            f"{len(ds.PerFrameFunctionalGroupsSequence)} Per-frame Functional Groups items"
        )
    return [frame_header(ds, number) for number in range(1, frames + 1)]


def _rescale(ds: Dataset, frame: int | None) -> tuple[float, float]:
    if frame is None:
        return float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    group = _group(ds, frame, "PixelValueTransformationSequence")
    if group is None:
        return 1.0, 0.0
    return float(group.get("RescaleSlope", 1)), float(group.get("RescaleIntercept", 0))


def slice_pixels(ds: Dataset, frame: int | None) -> npt.NDArray[np.float32]:
    """The slice's pixels (rows, columns), rescaled by its (frame's) slope and intercept."""
    pixels = ds.pixel_array  # pydicom keeps the decoded array: a multi-frame decodes once
    plane = pixels if frame is None else (pixels[frame - 1] if pixels.ndim == 3 else pixels)
    values = plane.astype(np.float32)
    slope, intercept = _rescale(ds, frame)
    return values * slope + intercept if (slope, intercept) != (1.0, 0.0) else values
