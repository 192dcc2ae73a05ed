"""The kinetic analysis as DICOM objects for PACS: SEG, curve-type colour map, TID 1500 SR.

- a BINARY SEG of the lesion candidates over the first post-contrast phase (one frame per
  slice, one segment per candidate);
- an RGB Secondary Capture series: the first post-contrast phase in grey with the curve
  type of each enhancing voxel in colour (persistent blue, plateau yellow, washout red),
  one image per slice that has an enhancing voxel;
- a Comprehensive SR, TID 1500, one TID 1410 planar ROI group per candidate: a CIRCLE SCOORD
  that encloses the candidate on the slice where it is largest, volume, maximal initial
  enhancement, signal enhancement ratio, curve type, the score, and the location: Finding
  Site quadrant (CID 6020, or Central region) with laterality, Clockface or region (111014,
  DCM; CID 6018), Depth (111020, DCM; CID 6024) and Distance from nipple (121242, DCM, mm),
  the concepts of the mammography CAD templates; its Tracking UID is the SEG segment's.
  The region is what lets a viewer put the group on its image: OHIF places only groups with
  a SCOORD/SCOORD3D (a TID 1501 group with only a source image stopped OHIF 3.13.2 with an
  error: it reads the first region of each group it tries to place).

Provenance (IHE AIR) and deterministic UIDs as every writer of the node: the "model" is the
rule-based kinetic CAD, :data:`KINETIC_CAD`, named honestly as untrained.
"""

from __future__ import annotations

from typing import Final

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from node.dicom.uids import derive_uid
from node.mri.assembly import DceExam
from node.mri.kinetics import KineticResult, LesionCandidate
from node.mri.phantom import CURVE_CODES
from node.mri.scoring import KINETIC_CAD, RULE_SCORER, KineticScorer
from node.writers.provenance import (
    NODE_MANUFACTURER,
    NOT_FOR_CLINICAL_USE,
    algorithm_identification,
    contributing_equipment,
    equipment_arguments,
    sr_algorithm_identification,
)

__all__ = [
    "CURVE_COLOURS",
    "CURVE_CONCEPTS",
    "KINETIC_CAD",
    "build_colour_map",
    "build_lesion_seg",
    "build_mri_report",
    "candidate_region",
    "candidate_tracking",
    "curve_overlay",
]

SEG_SERIES_NUMBER: Final = 9401
MAP_SERIES_NUMBER: Final = 9402
SR_SERIES_NUMBER: Final = 9403

# CID 6335-ish delayed phase curve types (DCM 130597-130599), and the colour of each.
CURVE_CONCEPTS: Final[dict[str, Code]] = {
    "persistent": codes.DCM.PersistentDelayedPhaseType1Curve,
    "plateau": codes.DCM.PlateauDelayedPhaseType2Curve,
    "washout": codes.DCM.WashoutDelayedPhaseType3Curve,
}
CURVE_COLOURS: Final[dict[str, tuple[int, int, int]]] = {
    "persistent": (40, 90, 255),
    "plateau": (255, 220, 0),
    "washout": (255, 30, 30),
}
_LATERALITY: Final = {"R": codes.SCT.Right, "L": codes.SCT.Left}
# CID 6020 Quadrant Location, CID 6018 Clockface Location or Region, CID 6024 Depth.
_QUADRANTS: Final = {
    "upper outer": codes.SCT.UpperOuterQuadrantOfBreast,
    "upper inner": codes.SCT.UpperInnerQuadrantOfBreast,
    "lower outer": codes.SCT.LowerOuterQuadrantOfBreast,
    "lower inner": codes.SCT.LowerInnerQuadrantOfBreast,
}
_CLOCK: Final = {hour: getattr(codes.SCT, f"_{hour}OClockPosition") for hour in range(1, 13)}
_CENTRAL: Final = codes.SCT.CentralRegionOfBreast
_DEPTHS: Final = {
    "anterior": codes.SCT.Anterior,
    "middle": Code("C25569", "NCIt", "Middle"),
    "posterior": codes.SCT.Posterior,
}
CLOCKFACE: Final = codes.DCM.ClockfaceOrRegion  # (111014, DCM)
DEPTH: Final = codes.DCM.Depth  # (111020, DCM)
DISTANCE_FROM_NIPPLE: Final = codes.DCM.DistanceFromNipple  # (121242, DCM)
# No standard concept names these measurements; a private scheme says so honestly.
_LOCAL: Final = "99MMNODE"
MAX_ENHANCEMENT: Final = Code("MRI001", _LOCAL, "Maximum initial enhancement")
SIGNAL_ENHANCEMENT_RATIO: Final = Code("MRI002", _LOCAL, "Signal enhancement ratio")
CURVE_TYPE: Final = Code("MRI003", _LOCAL, "Delayed phase curve type")
KINETIC_SCORE: Final = Code("MRI004", _LOCAL, "Kinetic suspicion score (not a probability)")
IMAGING_PROCEDURE: Final = Code("363679005", "SCT", "Imaging procedure")


def _uid(exam: DceExam, kind: str, *more: str) -> str:
    # A revision is a new version of the results: new UIDs (revision 0 keeps its own).
    revision = (f"revision {exam.revision}",) if exam.revision > 0 else ()
    return derive_uid(
        exam.StudyInstanceUID, KINETIC_CAD.model_id, KINETIC_CAD.version, kind, *revision, *more
    )


def candidate_tracking(exam: DceExam, candidate: LesionCandidate) -> tuple[str, str]:
    """(Tracking ID, Tracking UID) shared by a candidate's SEG segment and SR group."""
    label = f"{candidate.laterality} breast candidate {candidate.number}"
    return label, _uid(exam, "candidate", str(candidate.number))


def _check(exam: DceExam, result: KineticResult) -> None:
    shape = (len(exam.phases[1].slices), *result.labels.shape[1:])
    if result.labels.shape != shape:
        raise ValueError(
            f"kinetic maps are {result.labels.shape}, the post-contrast phase {shape}: a SEG "
            "frame must match its source image (PS3.3 C.8.20.2)"
        )


def build_lesion_seg(exam: DceExam, result: KineticResult) -> Dataset:
    """One BINARY SEG over the first post-contrast phase, a segment per candidate."""
    _check(exam, result)
    sources, positions = _seg_sources(exam)
    masks: list[npt.NDArray[np.bool_]] = []
    segments: list[hd.seg.SegmentDescription] = []
    candidates: list[LesionCandidate | None] = [*result.candidates] or [None]
    for candidate in candidates:
        if candidate is None:  # looked, found none: one empty segment says so
            label, uid = "No candidate", _uid(exam, "no candidate")
            masks.append(np.zeros(result.labels.shape, dtype=bool))
        else:
            label, uid = candidate_tracking(exam, candidate)
            masks.append(result.labels == candidate.number)
        colour = CURVE_COLOURS[candidate.curve] if candidate else (0, 255, 0)
        description = hd.seg.SegmentDescription(
            segment_number=len(segments) + 1,
            segment_label=label[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_identification(KINETIC_CAD),
            tracking_id=label,
            tracking_uid=uid,
            anatomic_regions=[codes.SCT.Breast],
            display_color=hd.color.CIELabColor(*_lab(colour)),
        )
        if candidate is not None:
            region = description.AnatomicRegionSequence[0]
            region.AnatomicRegionModifierSequence = [
                hd.sr.CodedConcept.from_code(_LATERALITY[candidate.laterality])
            ]
        segments.append(description)
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.stack(masks, axis=-1),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=_uid(exam, "SEG series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=_uid(exam, "SEG"),
        instance_number=1,
        content_label="KINETICS",
        content_description="DCE-MRI kinetic lesion candidates",
        series_description=f"AI MRI kinetic candidates ({NOT_FOR_CLINICAL_USE})",
        omit_empty_frames=False,
        plane_positions=positions,
        **equipment_arguments(KINETIC_CAD),
    )


def _seg_sources(
    exam: DceExam,
) -> tuple[list[Dataset], list[hd.PlanePositionSequence] | None]:
    """The SEG's source images, and its frames' positions when the source is multi-frame.

    Classic slices are the sources one for one. An Enhanced MR source is passed whole, as
    highdicom asks, with the positions of the first post-contrast phase's frames: highdicom
    then references, for each SEG frame, the source frames at its position (Referenced Frame
    Number in the Derivation Image Sequence), every phase's when one object holds them all.
    """
    phase = exam.phases[1]
    if not phase.frames:
        return list(phase.slices), None
    sources = list({str(ds.SOPInstanceUID): ds for ds in phase.slices}.values())
    if len(sources) != 1:
        raise ValueError(
            f"the first post-contrast phase is spread over {len(sources)} Enhanced MR images: "
            "a SEG derives from one multi-frame source image (PS3.3 C.8.20.2)"
        )
    positions = [
        hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, phase.header(index).position)
        for index in range(len(phase.slices))
    ]
    return sources, positions


def _lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """CIELab (D65) of an sRGB colour, as Recommended Display CIELab Value asks."""
    linear = [
        ((c / 255 + 0.055) / 1.055) ** 2.4 if c / 255 > 0.04045 else c / 255 / 12.92 for c in rgb
    ]
    matrix = np.array(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
    )
    xyz = matrix @ np.array(linear) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return float(116 * f[1] - 16), float(500 * (f[0] - f[1])), float(200 * (f[1] - f[2]))


def curve_overlay(
    grey: npt.NDArray[np.uint8], curve: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """RGB of a grey slice with each enhancing voxel in its curve type's colour."""
    rgb = np.repeat(grey[..., np.newaxis], 3, axis=-1)
    for name, code in CURVE_CODES.items():
        rgb[curve == code] = CURVE_COLOURS[name]
    return rgb


def build_colour_map(exam: DceExam, result: KineticResult) -> list[Dataset]:
    """RGB Secondary Capture images of the curve-type map, one per slice with enhancement."""
    _check(exam, result)
    post = exam.phases[1].volume()
    high = float(np.percentile(post, 99.5)) or 1.0
    grey = np.clip(post / high * 255.0, 0, 255).astype(np.uint8)
    images: list[Dataset] = []
    phase = exam.phases[1]
    for index, source in enumerate(phase.slices):
        curve = result.curve[index]
        if not curve.any():
            continue
        rgb = curve_overlay(grey[index], curve)
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=rgb,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=_uid(exam, "colour map series"),
            series_number=MAP_SERIES_NUMBER,
            sop_instance_uid=_uid(exam, "colour map", *_slice_identity(exam, index)),
            instance_number=len(images) + 1,
            manufacturer=NODE_MANUFACTURER,
            patient_orientation=("L", "P"),  # canonical axial rows and columns
            series_description=f"AI MRI curve types ({NOT_FOR_CLINICAL_USE})",
            contributing_equipment=[contributing_equipment(KINETIC_CAD)],
        )
        # General Series Laterality is Type 2C for a paired part (PS3.3 C.7.3.1): both breasts
        # are in every axial slice, so the source's empty value is kept.
        image.Laterality = source.get("Laterality", "")
        # Which slice it shows (General Image, PS3.3 C.7.6.1.1.3), for a reader to go back.
        # (with its Referenced Frame Number when the slice is a frame of an Enhanced MR image)
        image.SourceImageSequence = [phase.reference(index)]
        image.DerivationDescription = "DCE-MRI delayed phase curve types over first post-contrast"
        images.append(image)
    return images


def _slice_identity(exam: DceExam, index: int) -> tuple[str, ...]:
    """What names slice ``index`` of the first post-contrast phase: its SOP Instance UID, and
    its frame number when it is a frame of a multi-frame image."""
    phase = exam.phases[1]
    frame = phase.frame(index)
    uid = str(phase.slices[index].SOPInstanceUID)
    return (uid,) if frame is None else (uid, f"frame {frame}")


def candidate_region(
    exam: DceExam, result: KineticResult, candidate: LesionCandidate
) -> hd.sr.ImageRegion:
    """A circle around the candidate on the post-contrast slice where it is largest.

    Centre: the in-plane centroid of its voxels there; radius: to the farthest voxel's far
    edge, so the circle encloses the whole cross-section. SCOORD pixel coordinates put pixel
    centres at +0.5 (PS3.3 C.18.6.1.1).
    """
    mask = result.labels == candidate.number
    index = int(np.argmax(mask.sum(axis=(1, 2))))
    rows, columns = np.nonzero(mask[index])
    if rows.size == 0:
        raise ValueError(f"candidate {candidate.number} has no voxel in the label volume")
    x, y = columns + 0.5, rows + 0.5
    cx, cy = float(x.mean()), float(y.mean())
    radius = float(np.sqrt((x - cx) ** 2 + (y - cy) ** 2).max()) + 0.5 * np.sqrt(2.0)
    frame = exam.phases[1].frame(index)  # a frame of an Enhanced MR image, or None
    return hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.CIRCLE,  # centre, then a point on the circle
        graphic_data=np.array([[cx, cy], [cx + radius, cy]]),
        source_image=hd.sr.SourceImageForRegion.from_source_image(
            exam.phases[1].slices[index],
            referenced_frame_numbers=None if frame is None else [frame],
        ),
    )


def _group(
    exam: DceExam, result: KineticResult, candidate: LesionCandidate
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410, not 1501: the region places the group on its slice (no Referenced Segment
    beside it, which would make it a TID 1411 volumetric group; the Tracking UID links the
    SEG segment)."""
    label, uid = candidate_tracking(exam, candidate)
    location = candidate.location
    site = _CENTRAL if location.central else _QUADRANTS[location.quadrant]
    clock = _CENTRAL if location.clock_hour is None else _CLOCK[location.clock_hour]
    no_units = Code("1", "UCUM", "no units")
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=label),
        referenced_region=candidate_region(exam, result, candidate),
        finding_type=codes.SCT.Lesion,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        algorithm_id=sr_algorithm_identification(KINETIC_CAD),
        finding_sites=[hd.sr.FindingSite(site, laterality=_LATERALITY[candidate.laterality])],
        measurements=[
            hd.sr.Measurement(
                name=codes.SCT.Volume, value=candidate.volume_mm3, unit=codes.UCUM.CubicMillimeter
            ),
            hd.sr.Measurement(
                name=MAX_ENHANCEMENT,
                value=candidate.max_enhancement_percent,
                unit=codes.UCUM.Percent,
            ),
            hd.sr.Measurement(
                name=SIGNAL_ENHANCEMENT_RATIO, value=candidate.mean_ser, unit=no_units
            ),
            hd.sr.Measurement(name=KINETIC_SCORE, value=candidate.score, unit=no_units),
            hd.sr.Measurement(
                name=DISTANCE_FROM_NIPPLE,
                value=location.distance_from_nipple_mm,
                unit=codes.UCUM.Millimeter,
            ),
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(CURVE_TYPE, CURVE_CONCEPTS[candidate.curve]),
            hd.sr.QualitativeEvaluation(CLOCKFACE, clock),
            hd.sr.QualitativeEvaluation(DEPTH, _DEPTHS[location.depth]),
        ],
    )


def build_mri_report(
    exam: DceExam, result: KineticResult, seg: Dataset, scorer: KineticScorer = RULE_SCORER
) -> Dataset:
    """The TID 1500 report: one group per candidate, and the caveats as comments.

    ``scorer`` is the one that scored ``result``'s candidates (node/mri/scoring.py): the
    report names it.
    """
    _check(exam, result)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=KINETIC_CAD.device_uid,
            name=KINETIC_CAD.name,
            manufacturer_name=KINETIC_CAD.manufacturer,
            model_name=f"{KINETIC_CAD.model_id} {KINETIC_CAD.version}",
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=IMAGING_PROCEDURE,
        imaging_measurements=[_group(exam, result, c) for c in result.candidates],
        title=codes.DCM.ImagingMeasurementReport,
    )
    notes = [
        f"Generated by {KINETIC_CAD.name} {KINETIC_CAD.version}: {NOT_FOR_CLINICAL_USE.upper()}. "
        "Rule-based kinetics (BI-RADS MRI lexicon). Locations are estimated from the breast "
        "mask (nipple = its most anterior point).",
        f"Kinetic score by {scorer.spec.name} {scorer.spec.version} "
        f"({scorer.spec.training_data}): not a probability of malignancy."[:1024],
        f"{len(result.candidates)} candidate(s) at initial enhancement >= "
        f"{result.settings.enhancement_threshold_percent:g} %.",
    ]
    if result.motion.flagged:
        notes.append(
            f"Motion between pre- and post-contrast phases: {result.motion.magnitude_mm:.1f} mm "
            "in-plane; kinetics may be unreliable."
        )
    for ignored in exam.ignored:
        notes.append(f"Ignored series {ignored.SeriesDescription!r}: {ignored.reason}"[:1024])
    for note in notes:
        report[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=codes.DCM.Comment,
                value=note,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    return hd.sr.ComprehensiveSR(
        # each source instance once (an Enhanced MR image holds many slices)
        evidence=[*{str(ds.SOPInstanceUID): ds for ds in exam.phases[1].slices}.values(), seg],
        content=report[0],
        series_instance_uid=_uid(exam, "SR series"),
        series_number=SR_SERIES_NUMBER,
        # Another scorer gives other scores: another instance (the rule keeps its old UID).
        sop_instance_uid=_uid(exam, "SR", *([] if scorer is RULE_SCORER else [scorer.spec.ref])),
        instance_number=1,
        manufacturer=NODE_MANUFACTURER,
        is_complete=True,
        series_description=f"AI MRI kinetic report ({NOT_FOR_CLINICAL_USE})",
        contributing_equipment=[contributing_equipment(KINETIC_CAD)],
    )
