"""FRACTIONAL Segmentation of the model's heatmap: where the model looked, per source image.

Why: binary masks (:mod:`node.writers.seg`) show only what crossed the threshold; the
lesion-probability map lets a reader see what else the model weighed, and a viewer that
shows SEG overlays shows it without any AI-specific software. One SEG per source image
for the reason :mod:`node.writers.seg` gives (an MG image has no Frame of Reference).

Encoding: Segmentation Type FRACTIONAL, Segmentation Fractional Type PROBABILITY, 8 bits
with Maximum Fractional Value 255 (PS3.3 C.8.20.2.3): a pixel stores round(p * 255), so a
reader recovers p within half a step (1/510). Not for clinical use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from node.domain import ExamResult, ImageResult
from node.writers.provenance import (
    algorithm_identification,
    equipment_arguments,
    output_uid,
    series_number,
)
from node.writers.seg import fit_for_projection, pair_sources

__all__ = [
    "HEATMAP_SEG_SERIES_DESCRIPTION",
    "HEATMAP_SEG_SERIES_NUMBER",
    "MAX_FRACTIONAL_VALUE",
    "build_heatmap_segmentations",
]

HEATMAP_SEG_SERIES_NUMBER: Final = 9301  # the first; one series per image
HEATMAP_SEG_SERIES_DESCRIPTION: Final = "AI lesion probability map (not for clinical use)"
MAX_FRACTIONAL_VALUE: Final = 255  # 8-bit frames; the quantisation step is 1/255
_LATERALITY: Final = {"R": codes.SCT.Right, "L": codes.SCT.Left}  # CID 244 Laterality


class _ProbabilitySegmentation(hd.seg.Segmentation):
    """highdicom's Segmentation, checking a one-segment FRACTIONAL map by its range only.

    highdicom 0.28 checks a floating-point array with ``np.unique`` (a full sort) before it
    looks at the segmentation type, though for FRACTIONAL it needs only the minimum and the
    maximum: 0.7 s of a full-size image's 0.9 s (cProfile). The range test it makes is kept
    here, done with two reductions; every other array goes through highdicom's own check.
    The fix belongs upstream (test the range first, sort only for BINARY and LABELMAP).
    """

    @classmethod
    def _check_and_cast_pixel_array(
        cls,
        pixel_array: Any,
        segment_numbers: npt.NDArray[np.integer],
        segmentation_type: hd.seg.SegmentationTypeValues,
        dtype: type,
    ) -> tuple[Any, hd.seg.SegmentsOverlapValues]:
        one_fractional_segment = (
            segmentation_type is hd.seg.SegmentationTypeValues.FRACTIONAL
            and isinstance(pixel_array, np.ndarray)
            and pixel_array.dtype in (np.float32, np.float64)
            and pixel_array.ndim == 4
            and pixel_array.shape[-1] == 1
            and len(segment_numbers) == 1
        )
        if not one_fractional_segment:
            return super()._check_and_cast_pixel_array(
                pixel_array, segment_numbers, segmentation_type, dtype
            )
        if pixel_array.min() < 0.0 or pixel_array.max() > 1.0:
            raise ValueError("Floating point pixel array values must be in the range [0, 1].")
        return pixel_array, hd.seg.SegmentsOverlapValues.NO  # one segment cannot overlap


def _segment(exam: ExamResult, image: ImageResult) -> hd.seg.SegmentDescription:
    laterality = image.source.ImageLaterality
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lesion probability",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,  # any lesion kind the model looks for
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(exam.model),
        tracking_id=f"{laterality} {image.source.ViewPosition} probability map".strip(),
        tracking_uid=output_uid(exam, "heatmap segment", image.source.SOPInstanceUID),
        anatomic_regions=[codes.SCT.Breast],
    )
    region = description.AnatomicRegionSequence[0]  # which breast (PS3.3 10.5, CID 244)
    region.AnatomicRegionModifierSequence = [hd.sr.CodedConcept.from_code(_LATERALITY[laterality])]
    return description


def source_sized_heatmap(source: Dataset, image: ImageResult) -> npt.NDArray[np.float32]:
    """The image's heatmap, refused unless it lies on the source pixel matrix (PS3.3 C.8.20.2)."""
    heatmap = image.prediction.heatmap
    shape = (int(source.Rows), int(source.Columns))
    if heatmap.shape != shape:
        raise ValueError(
            f"heatmap of {image.source.SOPInstanceUID} is {heatmap.shape}, the image is "
            f"{shape}: a SEG frame must match its source pixel matrix (PS3.3 C.8.20.2)"
        )
    return heatmap


def _heatmap_segmentation(
    exam: ExamResult, source: Dataset, image: ImageResult, number: int
) -> Dataset:
    heatmap = source_sized_heatmap(source, image)
    if not np.all(np.isfinite(heatmap)) or heatmap.min() < 0.0 or heatmap.max() > 1.0:
        raise ValueError(
            f"heatmap of {image.source.SOPInstanceUID} must hold probabilities in [0, 1]: "
            "a FRACTIONAL PROBABILITY segment encodes nothing else (PS3.3 C.8.20.2.3)"
        )
    seg = _ProbabilitySegmentation(
        source_images=[source],
        **equipment_arguments(exam.model),
        pixel_array=heatmap.astype(np.float32, copy=False)[np.newaxis, :, :, np.newaxis],
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=MAX_FRACTIONAL_VALUE,
        segment_descriptions=[_segment(exam, image)],
        # One series per image: OHIF shows only the last SEG instance of a series.
        series_instance_uid=output_uid(exam, "heatmap SEG series", image.source.SOPInstanceUID),
        series_number=series_number(HEATMAP_SEG_SERIES_NUMBER, number - 1),
        sop_instance_uid=output_uid(exam, "heatmap SEG", image.source.SOPInstanceUID),
        instance_number=number,
        content_label="HEATMAP",
        content_description=f"{exam.model.name} {exam.model.version} probability map"[:64],
        series_description=HEATMAP_SEG_SERIES_DESCRIPTION,
        omit_empty_frames=False,
    )
    return fit_for_projection(seg, source)


def build_heatmap_segmentations(sources: Sequence[Dataset], exam: ExamResult) -> list[Dataset]:
    """One FRACTIONAL SEG per source image of ``exam``, each in its own deterministic series."""
    return [
        _heatmap_segmentation(exam, source, image, number)
        for number, (source, image) in enumerate(pair_sources(sources, exam), start=1)
    ]
