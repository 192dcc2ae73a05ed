"""BINARY Segmentations of the lesions a model found, one SEG object per source image.

Why one object per image: highdicom (and PS3.3 A.51 for frames without a Frame of
Reference) ties a SEG to source frames of one series, one size and one Frame of Reference,
and an MG image has no patient coordinate system, so highdicom accepts exactly one source
frame then. All SEG objects of one exam share one series.

Mask choice: segment *i* is the heatmap at or above the model's ``finding_threshold``
inside the disc of finding *i* (its centre and radius); where the heatmap there is below the
threshold (a finding taken from a coarse heatmap peak), the whole disc. Thresholding alone
would merge neighbouring findings into one blob and lose the link between a segment and
the finding the SR describes; the disc alone would ignore the lesion's shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from node.dicom.uids import derive_uid
from node.domain import ExamResult, Finding, ImageResult
from node.writers.provenance import (
    algorithm_identification,
    equipment_arguments,
    output_uid,
    series_number,
)

__all__ = [
    "FINDING_TYPES",
    "SEG_SERIES_DESCRIPTION",
    "SEG_SERIES_NUMBER",
    "build_segmentations",
    "finding_mask",
    "finding_peak",
    "finding_region",
    "finding_tracking",
    "fit_for_projection",
    "pair_sources",
]

SEG_SERIES_NUMBER: Final = 9201  # the first; one series per image (series_number)
SEG_SERIES_DESCRIPTION: Final = "AI lesion masks (not for clinical use)"

# CID 6014 Mammography Single Image Finding (SNOMED CT) for the kinds the model reports.
FINDING_TYPES: Final[dict[str, Code]] = {
    "mass": codes.SCT.Mass,  # 4147007
    "calcification": codes.SCT.CalcificationCluster,  # 129769006
}
_LATERALITY: Final = {"R": codes.SCT.Right, "L": codes.SCT.Left}  # CID 244 Laterality


def pair_sources(sources: Sequence[Dataset], exam: ExamResult) -> list[tuple[Dataset, ImageResult]]:
    """Each image result with its source dataset, in the exam's order; checks they match.

    An exam may span several studies (node.ingest.grouping: one study per view): the images
    in the exam's results study come first (stable order otherwise), so an exam-level object
    built from ``pairs[0]`` is in that study and references the others as other-study
    evidence; per-image objects stay in their own image's study.
    """
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    if len(by_uid) != len(sources):
        raise ValueError("sources hold the same SOPInstanceUID twice")
    pairs: list[tuple[Dataset, ImageResult]] = []
    for image in exam.images:
        ds = by_uid.get(image.source.SOPInstanceUID)
        if ds is None:
            raise ValueError(f"no source dataset for SOPInstanceUID {image.source.SOPInstanceUID}")
        if ds.StudyInstanceUID != image.source.StudyInstanceUID:
            raise ValueError(
                f"source {image.source.SOPInstanceUID} belongs to study {ds.StudyInstanceUID}, "
                f"not {image.source.StudyInstanceUID} as its result says"
            )
        if image.source.ImageLaterality not in ("L", "R"):
            raise ValueError(
                f"source {image.source.SOPInstanceUID} has no Image Laterality L or R: "
                "a breast-level result needs it (PS3.3 C.8.11.7)"
            )
        pairs.append((ds, image))
    if not pairs:
        raise ValueError("the exam has no images to write results for")
    if all(ds.StudyInstanceUID != exam.StudyInstanceUID for ds, _ in pairs):
        raise ValueError(
            f"no source is in the exam's study {exam.StudyInstanceUID}: its results would be "
            "in a study without its images (PS3.3 C.7.2.1)"
        )
    pairs.sort(key=lambda pair: pair[0].StudyInstanceUID != exam.StudyInstanceUID)
    return pairs


def finding_tracking(exam: ExamResult, image: ImageResult, index: int) -> tuple[str, str]:
    """(Tracking ID, Tracking UID) of a finding, shared by its SEG segment and SR group."""
    source = image.source
    identifier = f"{source.ImageLaterality} {source.ViewPosition} finding {index + 1}".strip()
    uid = derive_uid(output_uid(exam, "finding", source.SOPInstanceUID), str(index))
    return identifier, uid


Box = tuple[slice, slice]  # (rows, columns) of the image


def _disc_box(
    heatmap: npt.NDArray[np.float32], finding: Finding
) -> tuple[Box, npt.NDArray[np.bool_]]:
    """The finding's disc inside its bounding box, and where that box lies in the image: a
    lesion is small and a detector is not, so nothing is computed over the whole image."""
    rows, columns = heatmap.shape[:2]
    if not (0 <= finding.column < columns and 0 <= finding.row < rows):
        raise ValueError(f"finding at ({finding.column}, {finding.row}) lies outside the image")
    if finding.radius <= 0:
        raise ValueError(f"finding radius must be > 0 pixels, got {finding.radius}")
    top = max(0, math.floor(finding.row - finding.radius) - 1)
    bottom = min(rows, math.ceil(finding.row + finding.radius) + 1)
    left = max(0, math.floor(finding.column - finding.radius) - 1)
    right = min(columns, math.ceil(finding.column + finding.radius) + 1)
    # SCOORD pixel coordinates put pixel centres at +0.5 (PS3.3 C.18.6.1.1).
    row_index, column_index = np.ogrid[top:bottom, left:right]
    disc = (column_index + 0.5 - finding.column) ** 2 + (
        row_index + 0.5 - finding.row
    ) ** 2 <= finding.radius**2
    disc[int(finding.row) - top, int(finding.column) - left] = True
    return (slice(top, bottom), slice(left, right)), disc


def finding_region(
    heatmap: npt.NDArray[np.float32], finding: Finding, threshold: float
) -> tuple[Box, npt.NDArray[np.bool_]]:
    """The pixels of one finding inside its box (see the module docstring for the shape)."""
    box, disc = _disc_box(heatmap, finding)
    mask = disc & (heatmap[box] >= threshold)
    return box, (mask if mask.any() else disc)


def finding_mask(
    heatmap: npt.NDArray[np.float32], finding: Finding, threshold: float
) -> npt.NDArray[np.bool_]:
    """The pixels of one finding, on the whole image."""
    box, region = finding_region(heatmap, finding, threshold)
    full = np.zeros(heatmap.shape, dtype=bool)
    full[box] = region
    return full


def finding_peak(heatmap: npt.NDArray[np.float32], finding: Finding) -> float:
    """The heatmap's highest value in the finding's disc (the CAD SR's certainty)."""
    box, disc = _disc_box(heatmap, finding)
    return float(heatmap[box][disc].max())


FINDING_COLOURS = {"mass": "red", "calcification": "orange", "none": "green"}


def label_kind(prop_type: Code) -> str:
    """The domain kind of a segmented property type (for its display colour)."""
    for kind, code in FINDING_TYPES.items():
        if code == prop_type:
            return kind
    return "none"


def _segment(
    number: int,
    label: str,
    prop_type: Code,
    exam: ExamResult,
    laterality: str,
    tracking: tuple[str, str],
) -> hd.seg.SegmentDescription:
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=prop_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(exam.model),
        tracking_id=tracking[0],
        tracking_uid=tracking[1],
        anatomic_regions=[codes.SCT.Breast],
        # Viewers colour segments by this; without it OHIF warns and picks its own colour.
        display_color=hd.color.CIELabColor.from_string(
            FINDING_COLOURS.get(label_kind(prop_type), "yellow")
        ),
    )
    # Which breast: Anatomic Region Modifier Sequence (PS3.3 10.5, CID 244 Laterality).
    region = description.AnatomicRegionSequence[0]
    region.AnatomicRegionModifierSequence = [hd.sr.CodedConcept.from_code(_LATERALITY[laterality])]
    return description


def _segmentation(exam: ExamResult, source: Dataset, image: ImageResult, number: int) -> Dataset:
    prediction = image.prediction
    shape = (int(source.Rows), int(source.Columns))
    if prediction.heatmap.shape != shape:
        raise ValueError(
            f"heatmap of {image.source.SOPInstanceUID} is {prediction.heatmap.shape}, the "
            f"image is {shape}: a SEG frame must match its source pixel matrix (PS3.3 C.8.20.2)"
        )
    laterality = image.source.ImageLaterality
    # (frames, rows, columns, segments), built in its final dtype: each finding fills its
    # own box, and highdicom need not cast or scan more than it must.
    pixel_array = np.zeros((1, *shape, max(1, len(prediction.findings))), dtype=bool)
    segments: list[hd.seg.SegmentDescription] = []
    for index, finding in enumerate(prediction.findings):
        tracking = finding_tracking(exam, image, index)
        box, region = finding_region(prediction.heatmap, finding, exam.model.finding_threshold)
        pixel_array[(0, *box, index)] = region
        prop_type = FINDING_TYPES[finding.kind]
        segments.append(_segment(index + 1, tracking[0], prop_type, exam, laterality, tracking))
    if not segments:
        # An image without findings still gets a SEG: an empty segment says "looked, found none".
        tracking = (
            f"{laterality} {image.source.ViewPosition} no finding".strip(),
            output_uid(exam, "no finding", image.source.SOPInstanceUID),
        )
        segments.append(_segment(1, "No finding", codes.SCT.Lesion, exam, laterality, tracking))

    seg = hd.seg.Segmentation(
        source_images=[source],
        **equipment_arguments(exam.model),
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        # One series per source image: OHIF shows only the last SEG instance of a series,
        # so a shared series would hide the masks of all but one view.
        series_instance_uid=output_uid(exam, "SEG series", image.source.SOPInstanceUID),
        series_number=series_number(SEG_SERIES_NUMBER, number - 1),
        sop_instance_uid=output_uid(exam, "SEG", image.source.SOPInstanceUID),
        instance_number=number,
        content_label="LESIONS",
        content_description=f"{exam.model.name} {exam.model.version} lesion masks"[:64],
        series_description=SEG_SERIES_DESCRIPTION,
        omit_empty_frames=False,
    )
    return fit_for_projection(seg, source)


def fit_for_projection(seg: Dataset, source: Dataset) -> Dataset:
    """Make a SEG over a projection image (MG) valid and loadable (DESIGN.md known traps).

    highdicom omits Patient Orientation on projection images, a Type 2C error
    (PS3.3 C.7.6.1.1.1), and OHIF loads a SEG over a projection image only with a Plane
    Orientation functional group (PS3.3 C.7.6.16.2.4).

    The orientation is not a measurement: a projection image has no patient coordinate
    system, and (1, 0, 0, 0, 1, 0) only says "rows and columns as in the source". It is kept
    because without it OHIF 3.13 refuses the SEG (measured, DESIGN.md "The OHIF
    viewer and mammography"); the Segmentation IOD has no Frame of Reference here, so no
    reader can take it for a position in the patient, and dciodvfy accepts it.
    """
    seg.PatientOrientation = source.get("PatientOrientation", "")
    plane = Dataset()
    plane.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence = [plane]
    return seg


def build_segmentations(sources: Sequence[Dataset], exam: ExamResult) -> list[Dataset]:
    """One BINARY SEG per source image of ``exam``, each in its own deterministic series."""
    return [
        _segmentation(exam, source, image, number)
        for number, (source, image) in enumerate(pair_sources(sources, exam), start=1)
    ]
