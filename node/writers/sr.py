"""TID 1500 Imaging Measurement Report of one exam, in a Comprehensive SR.

Comprehensive SR (not Comprehensive 3D): every coordinate is a 2-D SCOORD on a projection
image, so nothing needs SCOORD3D, and OHIF reads both. Content (PS3.16 TID 1500):

- one TID 1410 planar ROI group per finding: a CIRCLE SCOORD on the source image, the finding
  type (the lesion's concept from :mod:`node.writers.matching`: one view or CC + MLO), the
  breast as finding site, "Probability of cancer" and the finding's tracking identifiers
  (the same as its SEG segment's, which is how a reader gets from the region to the mask);
- the Qualitative Evaluations container (TID 1500 row 12), not measurement groups: the exam's
  and each breast's "Probability of cancer", the operating point, the recall suggestion as
  "Recommended Follow-up" and the breast composition when known. Every group under Imaging
  Measurements then has its region, which stock OHIF needs to place any of them;
- a TEXT comment saying the report is not for clinical use.

Probabilities are written in percent (UCUM "%"): OHIF prints a UCUM "1" literally, and the
Mammography CAD templates express certainty in percent too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from node.domain import ExamResult, ImageResult, Laterality
from node.writers.cad_sr import TID4000_TEMPLATE, breast_composition, densest
from node.writers.matching import Lesion, exam_lesions
from node.writers.owned_content import owned_content
from node.writers.provenance import (
    NODE_MANUFACTURER,
    NOT_FOR_CLINICAL_USE,
    contributing_equipment,
    output_uid,
    sr_algorithm_identification,
)
from node.writers.seg import finding_tracking, pair_sources
from node.writers.templates import load_template

__all__ = [
    "PERCENT",
    "PROBABILITY_OF_CANCER",
    "SR_SERIES_DESCRIPTION",
    "SR_SERIES_NUMBER",
    "build_measurement_report",
]

SR_SERIES_NUMBER: Final = 9102
SR_SERIES_DESCRIPTION: Final = "AI measurement report (not for clinical use)"

PROBABILITY_OF_CANCER: Final = codes.DCM.ProbabilityOfCancer  # (111047, DCM), CID 6048
PERCENT: Final = codes.UCUM.Percent  # ("%", UCUM), CID 7181
CAD_OPERATING_POINT: Final = codes.DCM.CADOperatingPoint  # (111071, DCM)
RECOMMENDED_FOLLOW_UP: Final = codes.DCM.RecommendedFollowUp  # (111053, DCM)
RECALL: Final = codes.DCM.RecallForImagingFindings  # (111591, DCM), CID 6051
NO_RECALL: Final = codes.DCM.NormalIntervalFollowUp  # (111140, DCM), CID 6028
_LATERALITY: Final = {"R": codes.SCT.Right, "L": codes.SCT.Left}  # CID 244
BREAST_COMPOSITION: Final = codes.SCT.BreastComposition  # (129715009, SCT), values CID 6000
IMAGING_MEASUREMENTS: Final = codes.DCM.ImagingMeasurements  # (126010, DCM), TID 1500 row 6
IMAGING_PROCEDURE: Final = Code("363679005", "SCT", "Imaging procedure")  # CID 100
_BREAST_NAME: Final = {"R": "Right breast", "L": "Left breast"}
QUALITATIVE_EVALUATIONS: Final = Code("C0034375", "UMLS", "Qualitative Evaluations")


def _percent(score: float, what: str) -> float:
    if not 0.0 <= score <= 1.0 or np.isnan(score):
        raise ValueError(f"{what} must be a probability in [0, 1], got {score}")
    return round(score * 100.0, 6)


def _probability(score: float, what: str) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=PROBABILITY_OF_CANCER, value=_percent(score, what), unit=PERCENT)


def _finding_groups(
    exam: ExamResult, lesion: Lesion
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    """One TID 1410 planar ROI group per view of the lesion: the region on its source image.

    No "Referenced Segment" (121191) beside the region: with it a group is read as a
    TID 1411 volumetric group, which then lacks its segmentation source rows (121232,
    121233) and must not carry an Image Region; viewers (OHIF) hydrate TID 1410 groups.
    The SEG segment shares the group's Tracking UID, which links the two.
    """
    groups = []
    for mark in lesion.marks:
        image, finding = mark.image, mark.finding
        site = hd.sr.FindingSite(
            codes.SCT.Breast, laterality=_LATERALITY[image.source.ImageLaterality]
        )
        identifier, uid = finding_tracking(exam, image, mark.index)
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.CIRCLE,  # centre, then a point on the circle
            graphic_data=np.array(
                [[finding.column, finding.row], [finding.column + finding.radius, finding.row]]
            ),
            source_image=hd.sr.SourceImageForRegion.from_source_image(mark.source),
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=identifier),
                referenced_region=region,
                finding_type=lesion.concept,  # the vocabulary of node/writers/matching.py
                finding_category=codes.SCT.MorphologicallyAbnormalStructure,
                algorithm_id=sr_algorithm_identification(exam.model),
                finding_sites=[site],
                measurements=[_probability(finding.score, f"score of {identifier}")],
            )
        )
    return groups


def _laterality_modifier(laterality: str) -> hd.sr.CodeContentItem:
    return hd.sr.CodeContentItem(
        name=codes.SCT.Laterality,  # (272741003, SCT)
        value=_LATERALITY[laterality],
        relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
    )


def _score_item(label: str, score: float, laterality: str | None) -> hd.sr.NumContentItem:
    item = hd.sr.NumContentItem(
        name=PROBABILITY_OF_CANCER,
        value=_percent(score, f"{label} score"),
        unit=PERCENT,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    if laterality is not None:
        item.ContentSequence = hd.sr.ContentSequence([_laterality_modifier(laterality)])
    return item


def _composition_item(composition: Code, laterality: str | None) -> hd.sr.CodeContentItem:
    item = hd.sr.CodeContentItem(
        name=BREAST_COMPOSITION,
        value=composition,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    if laterality is not None:
        item.ContentSequence = hd.sr.ContentSequence([_laterality_modifier(laterality)])
    return item


def _qualitative_evaluations(
    exam: ExamResult, pairs: Sequence[tuple[Dataset, ImageResult]]
) -> hd.sr.ContainerContentItem:
    """TID 1500 rows 12-14: what the model says of the whole exam and of each breast.

    Not TID 1501 groups in Imaging Measurements: a group there without an image region makes
    viewers that place every group on an image (OHIF reads ``coords[0]`` of each) fail on
    the whole report. Here the recall suggestion and breast composition are row 13 CODE
    items; the exam and per-breast "Probability of cancer" and the operating point are NUM
    items by extension of the (extensible) template, a breast's items modified by Laterality.
    """
    template = load_template(TID4000_TEMPLATE)
    # No TID 4019 here: the observer device context names the model, and PixelMed's
    # validator (2022) reads its HAS CONCEPT MOD TEXT items as malformed row 14 TEXT.
    items: list[hd.sr.ContentItem] = [
        hd.sr.CodeContentItem(
            name=RECOMMENDED_FOLLOW_UP,
            value=RECALL if exam.recall else NO_RECALL,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    ]
    items.append(_score_item("Exam", exam.score, None))
    items.append(
        hd.sr.NumContentItem(
            name=CAD_OPERATING_POINT,
            value=_percent(exam.model.operating_point, "operating point"),
            unit=PERCENT,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )
    # Breast density (ACR BI-RADS a-d) when the model gives it, the same codes as TID 4000.
    exam_density = exam.density or densest([i.prediction.density for _, i in pairs])
    exam_composition = breast_composition(template, exam_density, "Exam")
    if exam_composition is not None:
        items.append(_composition_item(exam_composition, None))
    lateralities: tuple[Laterality, ...] = ("R", "L")
    for laterality in lateralities:
        score = exam.breast_score(laterality)
        if score is None:
            continue
        items.append(_score_item(_BREAST_NAME[laterality], score, laterality))
        density = densest(
            [i.prediction.density for _, i in pairs if i.source.ImageLaterality == laterality]
        )
        composition = breast_composition(template, density, _BREAST_NAME[laterality])
        if composition is not None:
            items.append(_composition_item(composition, laterality))
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _library_ready(source: Dataset) -> bool:
    """TID 1600 Image Library entries of projection images state Patient Orientation and
    Imager Pixel Spacing; a source without them (a digitised film as Secondary Capture) is
    left out of the library rather than described with invented values."""
    orientation = source.get("PatientOrientation")
    return bool(source.get("ImagerPixelSpacing")) and bool(orientation) and len(orientation) == 2


def exam_notes(exam: ExamResult) -> list[str]:
    """Plain-text caveats a reader must see: an incomplete exam, a revised result."""
    notes = []
    if not exam.complete:
        missing = ", ".join(exam.missing_views) or "expected views"
        notes.append(f"Incomplete exam: missing {missing}. Scores cover only the images received.")
    if exam.revision > 0:
        notes.append(
            f"Revision {exam.revision}: replaces the earlier AI result of this exam "
            "(images arrived after it was sent); see Predecessor Documents."
        )
    return notes


def build_measurement_report(
    sources: Sequence[Dataset], exam: ExamResult, segmentations: Sequence[Dataset]
) -> Dataset:
    """The TID 1500 report of ``exam``; ``segmentations`` are :func:`build_segmentations`'s."""
    pairs = pair_sources(sources, exam)
    seg_by_source = {
        str(ref.ReferencedSOPInstanceUID): seg
        for seg in segmentations
        for ref in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    groups: list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations] = []
    for _, image in pairs:
        if image.source.SOPInstanceUID not in seg_by_source:
            raise ValueError(f"no SEG references source {image.source.SOPInstanceUID}")
    # Lesion by lesion (numbered as every writer numbers them), the views of one lesion
    # together; then the groups in image order, as readers and tests expect them.
    lesion_groups = [
        (m, g)
        for lesion in exam_lesions(pairs)
        for m, g in zip(lesion.marks, _finding_groups(exam, lesion), strict=True)
    ]
    order = {id(image): i for i, (_, image) in enumerate(pairs)}
    lesion_groups.sort(key=lambda mg: (order[id(mg[0].image)], mg[0].index))
    groups.extend(g for _, g in lesion_groups)
    model = exam.model
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=model.device_uid,
            name=model.name,
            manufacturer_name=model.manufacturer,
            model_name=f"{model.model_id} {model.version}",
        ),
    )
    # An exam without findings has no measurement group. TID 1500 needs one of rows 6
    # (Imaging Measurements), 8 and 12 (Qualitative Evaluations), and row 12 is always
    # written below; highdicom insists on row 6, so it gets a placeholder group whose
    # container is taken out again.
    placeholder = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="no findings")
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        # TID 1500 row 4 takes CID 100 Quantitative Diagnostic Imaging Procedures, which has
        # no mammography entry; its generic member is "Imaging procedure".
        procedure_reported=IMAGING_PROCEDURE,
        imaging_measurements=groups or [placeholder],
        title=codes.DCM.ImagingMeasurementReport,  # what OHIF looks for (DESIGN.md)
        referenced_images=[s for s, _ in pairs if _library_ready(s)],
    )
    if not groups:
        content = report[0].ContentSequence
        (container,) = [i for i, item in enumerate(content) if item.name == IMAGING_MEASUREMENTS]
        del content[container]
    report[0].ContentSequence.append(_qualitative_evaluations(exam, pairs))
    report[0].ContentSequence.append(
        hd.sr.TextContentItem(
            name=codes.DCM.Comment,  # (121106, DCM)
            value=(
                f"Generated by {model.name} {model.version} on mammo-node: "
                f"{NOT_FOR_CLINICAL_USE.upper()}. {model.intended_use}"
            ),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )
    for note in exam_notes(exam):
        report[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=codes.DCM.Comment,
                value=note,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    with owned_content(report[0]):  # built for this document only: no deep copy of it
        return hd.sr.ComprehensiveSR(
            evidence=[s for s, _ in pairs] + list(segmentations),
            content=report[0],
            series_instance_uid=output_uid(exam, "SR series"),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=output_uid(exam, "SR"),
            instance_number=1,
            manufacturer=NODE_MANUFACTURER,
            is_complete=True,
            series_description=SR_SERIES_DESCRIPTION,
            contributing_equipment=[contributing_equipment(model)],
        )
