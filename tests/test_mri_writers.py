"""The MRI outputs are valid once built: SEG, curve-type colour map (RGB SC) and TID 1500 SR."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from validators import dciodvfy_errors, dciodvfy_output, pixelmed_sr_errors

from node.mri.assembly import DceExam, assemble_dce
from node.mri.kinetics import KineticResult, KineticSettings, analyse
from node.mri.phantom import make_dce_phantom
from node.mri.synthetic_dicom import dce_study
from node.mri.writers import (
    CURVE_COLOURS,
    KINETIC_CAD,
    build_colour_map,
    build_lesion_seg,
    build_mri_report,
    candidate_tracking,
)

# dciodvfy does not know DeviceUID in Contributing Equipment (IHE AIR adds it, as every writer
# of the node does), the empty bilateral Laterality, or the private coding scheme of the
# measurements no standard concept names.
_KNOWN = ("DeviceUID(0018,1002)", "Laterality(0020,0060)", "<99MMNODE>")


@pytest.fixture(scope="module")
def analysed() -> tuple[DceExam, KineticResult]:
    datasets, _ = dce_study(1)
    exam = assemble_dce(datasets)
    return exam, analyse(exam)


def _clean(ds: Dataset) -> None:
    lines = dciodvfy_output(ds)
    assert dciodvfy_errors(ds) == [], lines
    assert [
        line for line in lines if line.startswith("Warning") and not any(k in line for k in _KNOWN)
    ] == []


def test_seg_has_one_segment_per_candidate(analysed: tuple[DceExam, KineticResult]) -> None:
    exam, result = analysed
    seg = build_lesion_seg(exam, result)
    _clean(seg)
    assert len(seg.SegmentSequence) == len(result.candidates) == 3
    assert int(seg.NumberOfFrames) == len(exam.phases[1].slices) * 3
    for segment, candidate in zip(seg.SegmentSequence, result.candidates, strict=True):
        assert segment.TrackingUID == candidate_tracking(exam, candidate)[1]
    refs = seg.ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == exam.phases[1].slices[0].SeriesInstanceUID
    assert KINETIC_CAD.device_uid in {e.get("DeviceUID") for e in seg.ContributingEquipmentSequence}


def test_seg_without_candidates_says_so() -> None:
    datasets, _ = dce_study(2, make_dce_phantom(seed=2, slices=10, rows=64, columns=96, lesions=()))
    exam = assemble_dce(datasets)
    result = analyse(exam, KineticSettings(enhancement_threshold_percent=500))
    seg = build_lesion_seg(exam, result)
    _clean(seg)
    assert seg.SegmentSequence[0].SegmentLabel == "No candidate"


def test_colour_map_is_valid_rgb(analysed: tuple[DceExam, KineticResult]) -> None:
    exam, result = analysed
    images = build_colour_map(exam, result)
    assert len(images) == int((result.curve > 0).any(axis=(1, 2)).sum())
    _clean(images[0])
    assert len({ds.SeriesInstanceUID for ds in images}) == 1
    first = images[0]
    index = [s.SOPInstanceUID for s in exam.phases[1].slices].index(
        first.SourceImageSequence[0].ReferencedSOPInstanceUID
    )
    pixels = first.pixel_array
    for name, code in (("persistent", 1), ("plateau", 2), ("washout", 3)):
        where = result.curve[index] == code
        if where.any():
            assert np.all(pixels[where] == CURVE_COLOURS[name])


def test_report_has_one_group_per_candidate(analysed: tuple[DceExam, KineticResult]) -> None:
    exam, result = analysed
    seg = build_lesion_seg(exam, result)
    sr = build_mri_report(exam, result, seg)
    _clean(sr)
    measurements = next(
        i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"
    )
    groups = measurements.ContentSequence
    assert len(groups) == 3
    uids = {
        item.UID for group in groups for item in group.ContentSequence if item.ValueType == "UIDREF"
    }
    assert uids == {seg.SegmentSequence[i].TrackingUID for i in range(3)}
    again = build_mri_report(exam, result, seg)
    assert again.SOPInstanceUID == sr.SOPInstanceUID  # deterministic


def test_report_places_each_candidate(analysed: tuple[DceExam, KineticResult]) -> None:
    """Finding site quadrant, clock face, depth and nipple distance, with standard codes."""
    exam, result = analysed
    sr = build_mri_report(exam, result, build_lesion_seg(exam, result))
    measurements = next(
        i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"
    )
    for group, candidate in zip(measurements.ContentSequence, result.candidates, strict=True):
        items = {
            i.ConceptNameCodeSequence[0].CodeValue: i
            for i in group.ContentSequence
            if "ConceptNameCodeSequence" in i
        }
        site = items["363698007"].ConceptCodeSequence[0]  # Finding Site
        assert site.CodeMeaning.lower() == f"{candidate.quadrant} quadrant of breast"
        modifier = items["363698007"].ContentSequence[0].ConceptCodeSequence[0]
        assert modifier.CodeMeaning == {"R": "Right", "L": "Left"}[candidate.laterality]
        clock = items["111014"].ConceptCodeSequence[0]  # Clockface or region, CID 6018
        assert clock.CodeMeaning == f"{candidate.location.clock_hour} o'clock position"
        assert items["111020"].ConceptCodeSequence[0].CodeMeaning.lower() == (
            candidate.location.depth
        )
        distance = items["121242"].MeasuredValueSequence[0]  # Distance from nipple, mm
        assert float(distance.NumericValue) == pytest.approx(
            candidate.location.distance_from_nipple_mm
        )
        assert distance.MeasurementUnitsCodeSequence[0].CodeValue == "mm"
    hours = {c.curve: c.location.clock_hour for c in result.candidates}
    assert hours == {"persistent": 10, "plateau": 8, "washout": 2}  # default phantom


def test_report_puts_each_candidate_on_its_slice(analysed: tuple[DceExam, KineticResult]) -> None:
    """A CIRCLE SCOORD per group, on a post-contrast slice of the candidate, around all of its
    voxels there: what a viewer needs to place the group (OHIF draws only groups with one)."""
    exam, result = analysed
    sr = build_mri_report(exam, result, build_lesion_seg(exam, result))
    measurements = next(
        i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"
    )
    slices = [str(s.SOPInstanceUID) for s in exam.phases[1].slices]
    for group, candidate in zip(measurements.ContentSequence, result.candidates, strict=True):
        regions = [i for i in group.ContentSequence if i.ValueType == "SCOORD"]
        assert len(regions) == 1 and regions[0].GraphicType == "CIRCLE"
        source = regions[0].ContentSequence[0].ReferencedSOPSequence[0]
        index = slices.index(source.ReferencedSOPInstanceUID)
        assert index in candidate.slices
        (cx, cy), (px, py) = np.reshape(regions[0].GraphicData, (2, 2))
        radius = float(np.hypot(px - cx, py - cy))
        rows, columns = np.nonzero(result.labels[index] == candidate.number)
        assert rows.size > 0
        distances = np.hypot(columns + 0.5 - cx, rows + 0.5 - cy)
        assert distances.max() < radius < distances.max() + 2  # encloses, and tightly


@pytest.mark.slow
def test_report_passes_pixelmed(analysed: tuple[DceExam, KineticResult]) -> None:
    exam, result = analysed
    sr = build_mri_report(exam, result, build_lesion_seg(exam, result))
    assert pixelmed_sr_errors(sr) == []


def test_kinetic_outputs_builds_everything_in_one_call() -> None:
    from node.mri import kinetic_outputs

    datasets, _ = dce_study(2, make_dce_phantom(seed=2, slices=12, rows=64, columns=96))
    result, outputs = kinetic_outputs(datasets, summary=False)
    modalities = [ds.Modality for ds in outputs]
    assert modalities[:2] == ["SEG", "SR"] and set(modalities[2:]) <= {"MR", "OT"}
    assert len(outputs) == 2 + int((result.curve > 0).any(axis=(1, 2)).sum())
    assert {ds.Manufacturer for ds in outputs} == {"mammo-node"}
