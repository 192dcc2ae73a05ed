"""Mammography CAD SR (TID 4000) of one exam, built from ``dicom_sr_templates/``.

Why a Mammography CAD SR beside the TID 1500 report: mammography workstations and breast
PACS (the viewers radiologists read screening on) render CAD marks from this SOP class
(PS3.3 A.35.5), not from TID 1500. No Python library implements TID 4000, so the content
tree is data (``tid4000_mammography_cad.yaml``, expanded by :mod:`node.writers.templates`)
and this module only computes the values:

- the Image Library (TID 4020): every source image with its laterality (CID 6022 "Right
  breast"/"Left breast"), view, orientation, dates and imager pixel spacing, which the marks
  reference by reference;
- one Individual Impression (TID 4003) per lesion (:mod:`node.writers.matching`): a lesion
  seen on one view is a Single Image Finding (TID 4006) from CID 6014 ("Mammography breast
  density"); one matched on CC and MLO is a Composite Feature (TID 4004, CID 6016
  "Mammographic breast mass", related spatially, detected on multiple images) inferred from
  its two single-image findings. A single-image finding holds Certainty of Finding (the
  heatmap's peak within it), Probability of cancer (its score), the centre POINT and a
  closed POLYLINE outline on the source image (TID 4021), the algorithm (TID 4019);
- Rendering Intent: "Presentation Required" when the score is at or above the model's
  ``operating_point`` (the score at which it suggests recall), else "Presentation Optional"
  with a CAD Operating Point, an integer bin (PS3.17 E.4, :func:`operating_point_bin`), so a
  viewer may show optional marks down to the bin its user chooses; the bins are declared
  once per detection (TID 4023: Maximum and Recommended CAD Operating Point);
- the CAD Processing and Findings Summary (TID 4001/4002): the recall suggestion as a
  CID 6028 Recommended Follow-up, with the exam score as its Certainty of impression;
  breast composition (ACR BI-RADS a-d, CID 6000) when the model gives it, as a TID 4006
  "Breast composition" finding holding TID 4007 (TID 4002 is not extensible);
- Summary of Detections / Analyses (TID 4015-4018): what the model attempted, with the
  images it looked at as by-reference IMAGE properties (TID 4017/4018 row 4).

Not for clinical use: the series description says so, as does the Contributing Equipment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, get_args

import numpy as np
from highdicom.sr.sop import _SR
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from node.domain import ExamResult, Finding, FindingKind, ImageResult
from node.writers.matching import Mark, exam_lesions, finding_concept
from node.writers.owned_content import owned_content
from node.writers.provenance import (
    NODE_MANUFACTURER,
    contributing_equipment,
    output_uid,
)
from node.writers.seg import finding_peak, pair_sources
from node.writers.templates import SRTemplate, load_template

__all__ = [
    "CAD_SR_SERIES_DESCRIPTION",
    "CAD_SR_SERIES_NUMBER",
    "DENSITY_CATEGORIES",
    "MAMMOGRAPHY_CAD_SR_STORAGE",
    "OPERATING_POINT_BINS",
    "TID4000_TEMPLATE",
    "MammographyCADSR",
    "breast_composition",
    "build_mammography_cad_report",
    "densest",
    "operating_point_bin",
]

MAMMOGRAPHY_CAD_SR_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.88.50"  # PS3.4 B.5
CAD_SR_SERIES_NUMBER: Final = 9103
CAD_SR_SERIES_DESCRIPTION: Final = "AI mammography CAD report (not for clinical use)"
TID4000_TEMPLATE: Final = "tid4000_mammography_cad.yaml"
DENSITY_CATEGORIES: Final = ("a", "b", "c", "d")  # ACR BI-RADS Atlas, 5th edition
OUTLINE_VERTICES: Final = 32  # a closed polygon around the finding's disc
OPERATING_POINT_BINS: Final = 10  # TID 4023 Maximum CAD Operating Point (PS3.17 E.4)


class MammographyCADSR(_SR):
    """Mammography CAD SR document (PS3.3 A.35.5): highdicom's SR machinery, this SOP class.

    The IOD has the same modules as Comprehensive SR; its content constraints (PS3.3
    A.35.5.3) come from the TID 4000 template the content was built from.
    """

    def __init__(
        self,
        evidence: Sequence[Dataset],
        content: Dataset,
        series_instance_uid: str,
        series_number: int,
        sop_instance_uid: str,
        instance_number: int,
        **kwargs: Any,
    ) -> None:
        concept = content.get("ConceptNameCodeSequence")
        if not concept or concept[0].CodeValue != "111036":
            raise ValueError(
                'a Mammography CAD SR root is the CONTAINER (111036, DCM, "Mammography CAD '
                'Report") (PS3.3 A.35.5.3.1.1, TID 4000 row 1)'
            )
        # highdicom re-reads the content as its own content items, which have no by-reference
        # relationships (PS3.3 C.17.3.2.5); give it the root alone and attach the tree after.
        root = Dataset()
        for element in content:
            if element.keyword != "ContentSequence":
                root.add(element)
        root.ContentSequence = []
        super().__init__(
            evidence=evidence,
            content=root,
            series_instance_uid=series_instance_uid,
            series_number=series_number,
            sop_instance_uid=sop_instance_uid,
            sop_class_uid=MAMMOGRAPHY_CAD_SR_STORAGE,
            instance_number=instance_number,
            **kwargs,
        )
        known = {str(ds.SOPInstanceUID) for ds in evidence}
        referenced = set(_referenced_instances(content))
        if not referenced <= known:
            raise ValueError(
                f"content references {sorted(referenced - known)}, which are not in the evidence: "
                "every referenced instance must be listed (PS3.3 C.17.2.3)"
            )
        self.ContentSequence = content.ContentSequence


def _referenced_instances(item: Dataset) -> list[str]:
    found = [str(ref.ReferencedSOPInstanceUID) for ref in item.get("ReferencedSOPSequence", [])]
    for child in item.get("ContentSequence", []):
        found += _referenced_instances(child)
    return found


def _percent(score: float, what: str) -> float:
    if np.isnan(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {score}")
    return round(float(score) * 100.0, 6)


def breast_composition(template: SRTemplate, density: str | None, what: str) -> Code | None:
    """CID 6000 code of an ACR BI-RADS density category, or None when not given."""
    if density is None:
        return None
    if density not in DENSITY_CATEGORIES:
        raise ValueError(
            f"{what} density must be an ACR BI-RADS category {DENSITY_CATEGORIES}, got {density!r}"
        )
    return template.value("breast_composition", density)


def densest(densities: Sequence[str | None]) -> str | None:
    """BI-RADS reports the denser breast (and view): the highest category given."""
    given = [d for d in densities if d is not None]
    return max(given) if given else None


def _image_entry(template: SRTemplate, source: Dataset, image: ImageResult) -> dict[str, Any]:
    orientation = list(source.get("PatientOrientation") or [])
    spacing = source.get("ImagerPixelSpacing") or source.get("PixelSpacing")  # PS3.3 10.7.1.3
    view = image.source.ViewPosition
    return {
        "dataset": source,
        "uid": image.source.SOPInstanceUID,
        "laterality": template.value("laterality", image.source.ImageLaterality),
        "view": template.value_sets["view"].get(view),
        "orientation_row": orientation[0] if len(orientation) == 2 else None,
        "orientation_column": orientation[1] if len(orientation) == 2 else None,
        "study_date": source.get("StudyDate") or None,
        "study_time": source.get("StudyTime") or None,
        "content_date": source.get("ContentDate") or None,
        "content_time": source.get("ContentTime") or None,
        # Pixel Spacing is (row spacing, column spacing) in mm; TID 4020 wants um.
        "row_spacing_um": float(spacing[0]) * 1000.0 if spacing else None,
        "column_spacing_um": float(spacing[1]) * 1000.0 if spacing else None,
    }


def _outline(finding: Finding, rows: int, columns: int) -> list[list[float]]:
    """Closed polygon (first point repeated last, PS3.3 C.18.6.1.2) inside the image."""
    angles = np.linspace(0.0, 2.0 * np.pi, OUTLINE_VERTICES, endpoint=False)
    points = np.stack(
        [
            finding.column + finding.radius * np.cos(angles),
            finding.row + finding.radius * np.sin(angles),
        ],
        axis=-1,
    )
    points[:, 0] = np.clip(points[:, 0], 0.0, float(columns))
    points[:, 1] = np.clip(points[:, 1], 0.0, float(rows))
    closed = np.vstack([points, points[:1]])
    return [[round(float(x), 3), round(float(y), 3)] for x, y in closed]


def operating_point_bin(score: float, operating_point: float) -> int | None:
    """CAD Operating Point of an optional mark (PS3.17 E.4), None for a required one.

    The bins are score thresholds below the model's operating point, from the least to the
    most sensitive: bin k shows marks scoring at least ``operating_point * (1 - k / N)``
    (N = ``OPERATING_POINT_BINS``). A viewer set to bin k presents every mark whose bin is
    at most k; bin 0, the recommended one, shows the required marks only.
    """
    if score >= operating_point:
        return None
    fraction = 1.0 - score / operating_point if operating_point > 0 else 1.0
    return max(1, min(OPERATING_POINT_BINS, math.ceil(fraction * OPERATING_POINT_BINS)))


def _finding_entry(template: SRTemplate, exam: ExamResult, mark: Mark) -> dict[str, Any]:
    source, image, finding = mark.source, mark.image, mark.finding
    prediction = image.prediction
    shape = (int(source.Rows), int(source.Columns))
    if prediction.heatmap.shape != shape:
        raise ValueError(
            f"heatmap of {image.source.SOPInstanceUID} is {prediction.heatmap.shape}, the image "
            f"is {shape}: SCOORD coordinates are those of the source pixel matrix (PS3.3 C.18.6)"
        )
    what = f"finding {mark.index + 1} of {image.source.SOPInstanceUID}"
    certainty = float(np.clip(finding_peak(prediction.heatmap, finding), 0.0, 1.0))
    operating_point = exam.model.operating_point
    return {
        # The single-view concept (CID 6014), also inside a composite feature.
        "type": finding_concept(finding.kind, 1),
        "rendering_intent": _intent(template, finding.score, operating_point),
        "operating_point": operating_point_bin(finding.score, operating_point),
        "score": _percent(finding.score, f"score of {what}"),
        "certainty": _percent(certainty, f"heatmap peak of {what}"),
        "center": [[finding.column, finding.row]],
        "outline": _outline(finding, *shape),
        "image_uid": image.source.SOPInstanceUID,
    }


def _intent(template: SRTemplate, score: float, operating_point: float) -> Code:
    return template.value(
        "rendering_intent", "required" if score >= operating_point else "optional"
    )


def _context(template: SRTemplate, sources: Sequence[Dataset], exam: ExamResult) -> dict[str, Any]:
    pairs = pair_sources(sources, exam)
    lesions = exam_lesions(pairs)
    single_findings = [
        _finding_entry(template, exam, lesion.marks[0])
        for lesion in lesions
        if not lesion.composite
    ]
    composites = [
        {
            "type": lesion.concept,
            "rendering_intent": _intent(template, lesion.score, exam.model.operating_point),
            "score": _percent(lesion.score, f"score of lesion {lesion.number}"),
            "findings": [_finding_entry(template, exam, mark) for mark in lesion.marks],
        }
        for lesion in lesions
        if lesion.composite
    ]
    all_densities = [i.prediction.density for _, i in pairs]
    exam_density = exam.density if exam.density is not None else densest(all_densities)
    image_uids = [image.source.SOPInstanceUID for _, image in pairs]
    kinds: tuple[FindingKind, ...] = get_args(FindingKind)
    analyses = [template.value("analysis", "overall_impression")]
    if exam_density is not None:
        analyses.append(template.value("analysis", "breast_composition"))
    return {
        "images": [_image_entry(template, source, image) for source, image in pairs],
        "image_uids": image_uids,
        "single_findings": single_findings,
        "composites": composites,
        "exam": {
            "score": _percent(exam.score, "exam score"),
            "follow_up": template.value("follow_up", "recall" if exam.recall else "no_recall"),
            # BI-RADS reports the denser breast; TID 4006 has no laterality row for it.
            "density": breast_composition(template, exam_density, "exam"),
            "density_intent": template.value("rendering_intent", "required"),
        },
        "summary": template.value(
            "cad_summary", "with_findings" if lesions else "without_findings"
        ),
        "operating_points": {"maximum": OPERATING_POINT_BINS, "recommended": 0},
        "algorithm": {"name": exam.model.name, "version": exam.model.version},
        # The model looks for every kind on every image (TID 4015: attempted, not found).
        "detections": [{"type": finding_concept(kind, 1)} for kind in kinds],
        "analyses": analyses,
    }


def build_mammography_cad_report(sources: Sequence[Dataset], exam: ExamResult) -> Dataset:
    """The Mammography CAD SR of ``exam``, one per exam and model version."""
    template = load_template(TID4000_TEMPLATE)
    content = template.build(_context(template, sources, exam))
    pairs = pair_sources(sources, exam)
    with owned_content(content):  # built for this document only: no deep copy of it
        return MammographyCADSR(
            evidence=[source for source, _ in pairs],
            content=content,
            series_instance_uid=output_uid(exam, "CAD SR series"),
            series_number=CAD_SR_SERIES_NUMBER,
            sop_instance_uid=output_uid(exam, "CAD SR"),
            instance_number=1,
            manufacturer=NODE_MANUFACTURER,
            is_complete=True,
            series_description=CAD_SR_SERIES_DESCRIPTION,
            contributing_equipment=[contributing_equipment(exam.model)],
        )
