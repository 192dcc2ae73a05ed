"""Grayscale Softcopy Presentation States that draw the findings on each source image.

Why: nearly every PACS viewer applies a GSPS (PS3.3 A.33.1) even when it renders neither
SR nor SEG, so the findings, their scores and the image's score still reach the reader.
One GSPS per source image (its graphics are in that image's pixel space), one series per
breast (General Series Laterality is Type 2C for a paired organ), deterministic UIDs:

- layer "AI FINDINGS": per finding a CIRCLE (centre and a point on the circle, PIXEL
  units, PS3.3 C.10.5.1.2; clipped to the image) and a short label above it: the lesion's
  number and name as the other outputs give them (node/writers/matching.py) and its score
  ("1: Density (one view) 83%"), tracked with the same Tracking ID/UID as the finding's SEG
  segment and SR group;
- layer "AI SUMMARY": the image's score, the operating-point verdict and "not for clinical
  use", in DISPLAY units at the top left, so it stays readable at any zoom.

The window is the source image's own (highdicom copies its VOI LUT), so applying the
presentation state changes nothing but the overlay. Not for clinical use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from node.domain import ExamResult, Finding, ImageResult
from node.writers.locales import load_locale
from node.writers.matching import Lesion, exam_lesions, lesion_index
from node.writers.provenance import (
    NOT_FOR_CLINICAL_USE,
    equipment_arguments,
    output_uid,
    series_number,
)
from node.writers.seg import finding_tracking, pair_sources

__all__ = [
    "GSPS_SERIES_DESCRIPTION",
    "GSPS_SERIES_NUMBER",
    "build_presentation_states",
    "finding_label",
]

GSPS_SERIES_NUMBER: Final = 9105  # right breast; the left breast's series is 9106
GSPS_SERIES_DESCRIPTION: Final = "AI findings overlay (not for clinical use)"
_ENGLISH: Final = load_locale("en")  # GSPS text has no language of its own: English
_FINDINGS_LAYER: Final = hd.pr.GraphicLayer(
    layer_name="AI FINDINGS", order=1, description="Findings of the AI model"
)
_SUMMARY_LAYER: Final = hd.pr.GraphicLayer(
    layer_name="AI SUMMARY", order=2, description="Image score of the AI model"
)
_SUMMARY_BOX: Final = (0.01, 0.01, 0.7, 0.06)  # DISPLAY units: (left, top, right, bottom)


def _percent(score: float, what: str) -> int:
    if np.isnan(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {score}")
    return round(score * 100.0)


def finding_label(lesion: Lesion, finding: Finding, what: str = "finding") -> str:
    """The short text drawn beside a finding: its lesion's number and name, its score."""
    _percent(finding.score, f"score of {what}")  # checks it is a probability
    name = _ENGLISH.text(lesion.label_key)
    return f"{lesion.number}: {name} {_ENGLISH.score(finding.score, decimals=0)}"


def _on_image(finding: Finding, rows: int, columns: int) -> bool:
    return 0 <= finding.column < columns and 0 <= finding.row < rows and finding.radius > 0


def _circle(finding: Finding, rows: int, columns: int) -> np.ndarray:
    """Centre and one point of the circle, both inside the image (PS3.3 C.10.5.1.2: PIXEL
    graphic data lie in the image). A circle reaching past an edge keeps its centre and is
    clipped to the largest radius that fits, so the mark is shown, not the job failed."""
    x, y = finding.column, finding.row
    fits = max(x, columns - 1 - x, y, rows - 1 - y)
    radius = min(finding.radius, fits)
    for point in ((x + radius, y), (x - radius, y), (x, y + radius), (x, y - radius)):
        if 0 <= point[0] <= columns - 1 and 0 <= point[1] <= rows - 1:
            return np.array([[x, y], list(point)])
    return np.array([[x, y], [x, y]])  # unreachable: the largest fitting radius fits


def _finding_annotations(
    exam: ExamResult,
    image: ImageResult,
    rows: int,
    columns: int,
    lesions: dict[tuple[str, int], Lesion],
) -> tuple[list[hd.pr.GraphicObject], list[hd.pr.TextObject]]:
    graphics: list[hd.pr.GraphicObject] = []
    texts: list[hd.pr.TextObject] = []
    for index, finding in enumerate(image.prediction.findings):
        identifier, uid = finding_tracking(exam, image, index)
        if not _on_image(finding, rows, columns):
            # A centre off the image is no mark at all (a model fault): this output fails
            # alone, the others are still built (node/writers/outputs.py).
            raise ValueError(
                f"{identifier} at ({finding.column}, {finding.row}) radius {finding.radius} "
                "is not a circle on the image: PIXEL graphic data are source pixel "
                "coordinates (PS3.3 C.10.5.1.2)"
            )
        graphics.append(
            hd.pr.GraphicObject(
                graphic_type=hd.pr.GraphicTypeValues.CIRCLE,
                graphic_data=_circle(finding, rows, columns),
                units=hd.pr.AnnotationUnitsValues.PIXEL,
                tracking_id=identifier,
                tracking_uid=uid,
            )
        )
        texts.append(
            hd.pr.TextObject(
                text_value=finding_label(
                    lesions[(image.source.SOPInstanceUID, index)], finding, identifier
                ),
                units=hd.pr.AnnotationUnitsValues.PIXEL,
                anchor_point=(finding.column, max(finding.row - finding.radius, 0.0)),
                anchor_point_visible=False,
            )
        )
    return graphics, texts


def _summary_text(exam: ExamResult, image: ImageResult) -> str:
    score = _percent(image.prediction.score, f"score of {image.source.SOPInstanceUID}")
    verdict = "at or above" if image.prediction.score >= exam.model.operating_point else "below"
    found = len(image.prediction.findings)
    return (
        f"AI {exam.model.name} {exam.model.version}: image score {score}% ({verdict} operating "
        f"point {_percent(exam.model.operating_point, 'operating point')}%), "
        f"{found or 'no'} finding{'' if found == 1 else 's'}. {NOT_FOR_CLINICAL_USE.upper()}"
    )


def _presentation_state(
    exam: ExamResult,
    source: Dataset,
    image: ImageResult,
    number: int,
    lesions: dict[tuple[str, int], Lesion],
) -> Dataset:
    graphics, texts = _finding_annotations(
        exam, image, int(source.Rows), int(source.Columns), lesions
    )
    annotations = [
        hd.pr.GraphicAnnotation(
            referenced_images=[source],
            graphic_layer=_SUMMARY_LAYER,
            text_objects=[
                hd.pr.TextObject(
                    text_value=_summary_text(exam, image),
                    units=hd.pr.AnnotationUnitsValues.DISPLAY,
                    bounding_box=_SUMMARY_BOX,
                    text_justification=hd.pr.TextJustificationValues.LEFT,
                )
            ],
        )
    ]
    if graphics:
        annotations.insert(
            0,
            hd.pr.GraphicAnnotation(
                referenced_images=[source],
                graphic_layer=_FINDINGS_LAYER,
                graphic_objects=graphics,
                text_objects=texts,
            ),
        )
    state = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[source],
        series_instance_uid=_series_uid(exam, image),
        series_number=series_number(
            GSPS_SERIES_NUMBER, 0 if image.source.ImageLaterality == "R" else 1
        ),
        sop_instance_uid=output_uid(exam, "GSPS", image.source.SOPInstanceUID),
        instance_number=number,
        **equipment_arguments(exam.model),
        content_label="AI_FINDINGS",
        content_description=f"{exam.model.name} {exam.model.version} findings"[:64],
        graphic_annotations=annotations,
        graphic_layers=[_FINDINGS_LAYER, _SUMMARY_LAYER],
        series_description=GSPS_SERIES_DESCRIPTION,
    )
    # Laterality (0020,0060) is Type 2C for a paired body part (PS3.3 C.7.3.1): hence one
    # series per breast, each with the breast's laterality.
    state.Laterality = image.source.ImageLaterality
    return state


def _series_uid(exam: ExamResult, image: ImageResult) -> str:
    """One series per breast and study: a series is in one study (PS3.3 C.7.3.1), and an exam
    of several studies (one per view) has a GSPS in each. The exam's own study keeps the UID
    a one-study exam always had."""
    what = f"GSPS series {image.source.ImageLaterality}"
    if image.source.StudyInstanceUID != exam.StudyInstanceUID:
        what += f" {image.source.StudyInstanceUID}"
    return output_uid(exam, what)


def build_presentation_states(sources: Sequence[Dataset], exam: ExamResult) -> list[Dataset]:
    """One GSPS per source image of ``exam``, in one deterministic series per breast."""
    pairs = pair_sources(sources, exam)
    lesions = lesion_index(exam_lesions(pairs))
    return [
        _presentation_state(exam, source, image, number, lesions)
        for number, (source, image) in enumerate(pairs, start=1)
    ]
