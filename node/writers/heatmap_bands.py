"""BINARY Segmentation of the model's heatmap in probability bands: where the model looked.

Why bands and not the FRACTIONAL map (:mod:`node.writers.heatmap_seg`): OHIF 3.13 refuses
FRACTIONAL segmentations ("Fractional segmentations are not yet supported"), and most
viewers that show SEG overlays show BINARY ones only. A few bands, each its own segment
with its own colour (Recommended Display CIELab Value, PS3.3 C.8.20.2), show the same
picture in any such viewer, and the segment labels carry the colour scale's legend.

Encoding: segment *i* holds the pixels whose lesion probability p lies in
[``BANDS[i]``, ``BANDS[i + 1]``) (the last band is closed at 1). The bands do not overlap,
so a viewer that draws a SEG as one label map (OHIF on a projection image) shows them all;
pixels below the lowest bound are in no segment (transparent). The colours follow the
viridis scale (dark blue = lowest band, yellow = highest), apart from the red and orange of
the lesion masks (:mod:`node.writers.seg`). One SEG per source image, each in its own
series, for the reasons :mod:`node.writers.seg` gives. Not for clinical use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from node.domain import ExamResult, ImageResult
from node.writers.heatmap_seg import source_sized_heatmap
from node.writers.provenance import (
    algorithm_identification,
    equipment_arguments,
    output_uid,
    series_number,
)
from node.writers.seg import fit_for_projection, pair_sources

if TYPE_CHECKING:  # only for the builder's signature; outputs imports this module
    from node.writers.outputs import BuildOptions, Output

__all__ = [
    "BANDS",
    "BAND_COLOURS",
    "HEATMAP_BANDS_SERIES_DESCRIPTION",
    "HEATMAP_BANDS_SERIES_NUMBER",
    "band_label",
    "band_labels",
    "band_masks",
    "build_heatmap_band_segmentations",
    "heatmap_bands",
]

HEATMAP_BANDS_SERIES_NUMBER: Final = 9401  # the first; one series per image (series_number)
HEATMAP_BANDS_SERIES_DESCRIPTION: Final = "AI where the model looked (not for clinical use)"
#: Lower bounds of the probability bands; the last band ends at 1 (inclusive).
BANDS: Final[tuple[float, ...]] = (0.25, 0.5, 0.75, 0.9)
#: Display colour of each band (viridis: dark blue, teal, green, yellow).
BAND_COLOURS: Final[tuple[str, ...]] = ("#3b528b", "#21918c", "#5ec962", "#fde725")
_LATERALITY: Final = {"R": codes.SCT.Right, "L": codes.SCT.Left}  # CID 244 Laterality


def band_label(index: int) -> str:
    """The segment label of band ``index``: its probability range, the legend a reader sees."""
    low = round(BANDS[index] * 100)
    high = round(BANDS[index + 1] * 100) if index + 1 < len(BANDS) else 100
    return f"Lesion probability {low}-{high}%"


def band_labels(heatmap: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """Each pixel's band number (1 = the lowest band; 0 below ``BANDS[0]``): the label map
    highdicom takes for a BINARY SEG whose segments cannot overlap, so it checks one maximum
    instead of summing every segment's frame at full resolution."""
    if heatmap.ndim != 2:
        raise ValueError(f"a heatmap is one 2-D frame, got shape {heatmap.shape}")
    if not np.all(np.isfinite(heatmap)) or heatmap.min() < 0.0 or heatmap.max() > 1.0:
        raise ValueError("a heatmap must hold lesion probabilities in [0, 1]")
    # The bounds in the heatmap's own dtype, so a value equal to a bound lands in its band.
    bounds = np.asarray(BANDS, dtype=heatmap.dtype)
    return np.searchsorted(bounds, heatmap, side="right").astype(np.uint8)


def band_masks(heatmap: npt.NDArray[np.floating]) -> list[npt.NDArray[np.bool_]]:
    """One mask per band; every pixel is in at most one (see the module docstring)."""
    labels = band_labels(heatmap)
    return [labels == number for number in range(1, len(BANDS) + 1)]


def _segment(exam: ExamResult, image: ImageResult, index: int) -> hd.seg.SegmentDescription:
    source = image.source
    label = band_label(index)
    description = hd.seg.SegmentDescription(
        segment_number=index + 1,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,  # any lesion kind the model looks for
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(exam.model),
        tracking_id=f"{source.ImageLaterality} {source.ViewPosition} {label}".strip()[:64],
        tracking_uid=output_uid(exam, f"heatmap band {index}", source.SOPInstanceUID),
        anatomic_regions=[codes.SCT.Breast],
        display_color=hd.color.CIELabColor.from_string(BAND_COLOURS[index]),
    )
    region = description.AnatomicRegionSequence[0]  # which breast (PS3.3 10.5, CID 244)
    region.AnatomicRegionModifierSequence = [
        hd.sr.CodedConcept.from_code(_LATERALITY[source.ImageLaterality])
    ]
    return description


def _band_segmentation(
    exam: ExamResult, source: Dataset, image: ImageResult, number: int
) -> Dataset:
    labels = band_labels(source_sized_heatmap(source, image))
    seg = hd.seg.Segmentation(
        source_images=[source],
        **equipment_arguments(exam.model),
        pixel_array=labels[np.newaxis],  # (frames, rows, columns): band numbers, 0 = none
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(exam, image, index) for index in range(len(BANDS))],
        # One series per image: OHIF shows only the last SEG instance of a series.
        series_instance_uid=output_uid(exam, "heatmap bands series", image.source.SOPInstanceUID),
        series_number=series_number(HEATMAP_BANDS_SERIES_NUMBER, number - 1),
        sop_instance_uid=output_uid(exam, "heatmap bands SEG", image.source.SOPInstanceUID),
        instance_number=number,
        content_label="HEATMAP_BANDS",
        content_description=f"{exam.model.name} {exam.model.version} probability bands"[:64],
        series_description=HEATMAP_BANDS_SERIES_DESCRIPTION,
        omit_empty_frames=False,  # every band has its frame, empty or not
    )
    return fit_for_projection(seg, source)


def build_heatmap_band_segmentations(sources: Sequence[Dataset], exam: ExamResult) -> list[Dataset]:
    """One BINARY banded-heatmap SEG per source image of ``exam``."""
    return [
        _band_segmentation(exam, source, image, number)
        for number, (source, image) in enumerate(pair_sources(sources, exam), start=1)
    ]


def heatmap_bands(
    sources: Sequence[Dataset],
    exam: ExamResult,
    _built: Sequence[Output],
    _options: BuildOptions,
) -> list[Dataset]:
    """The ``heatmap_bands`` output kind's builder (:data:`node.writers.outputs.OUTPUT_KINDS`)."""
    return build_heatmap_band_segmentations(sources, exam)
