"""SEG and TID 1500 SR writers, checked with dciodvfy and DCMTK on a hand-built ExamResult."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from validators import dciodvfy_errors, dciodvfy_output, dsr2html, dsrdump, write_part10

from node.dicom.uids import derive_uid, is_valid_uid
from node.domain import (
    ExamResult,
    Finding,
    ImagePrediction,
    ImageResult,
    ModelSpec,
)
from node.inference.scoring import source_image
from node.synthetic.dicom import synthetic_exam
from node.writers import (
    NODE_MANUFACTURER,
    build_measurement_report,
    build_outputs,
    build_segmentations,
    output_uid,
)
from node.writers.seg import finding_mask, finding_peak

MODEL = ModelSpec(
    model_id="toy-mammo",
    version="1.2.0",
    name="Toy Mammo",
    manufacturer="mammo-node project",
    device_uid=derive_uid("toy-mammo", "1.2.0", "device"),
    intended_use="Research on synthetic data",
    training_data="synthetic phantoms",
    operating_point=0.5,
    finding_threshold=0.4,
    input_size=(256, 208),
)
# Lesions on R CC and L MLO; L CC and R MLO have none (SCREENING_VIEWS order).
LESIONS = (1, 0, 0, 1)
SCORES = {"R CC": 0.83, "L MLO": 0.61}
IGNORED_WARNING = "DeviceUID"  # AIR asks for it in Contributing Equipment; dciodvfy 2022 lacks it


def _heatmap(shape: tuple[int, int], findings: tuple[Finding, ...]) -> np.ndarray:
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    heat = np.zeros(shape, np.float32)
    for f in findings:
        distance2 = (columns - f.column) ** 2 + (rows - f.row) ** 2
        heat += np.exp(-distance2 / (2 * (f.radius / 2) ** 2))
    return np.clip(heat, 0, 1).astype(np.float32)


@functools.cache
def _exam() -> tuple[list[Dataset], ExamResult]:
    exam = synthetic_exam(3, rows=256, columns=208, lesions_per_image=LESIONS)
    sources = [ds for ds, _ in exam]
    images = []
    for ds, truth in exam:
        key = f"{ds.ImageLaterality} {ds.ViewPosition}"
        findings = [replace(f, score=SCORES[key]) for f in truth]
        prediction = ImagePrediction(
            score=SCORES.get(key, 0.05),
            heatmap=_heatmap((ds.Rows, ds.Columns), truth),
            findings=findings,
        )
        images.append(ImageResult(source_image(ds), prediction))
    return sources, ExamResult(sources[0].StudyInstanceUID, MODEL, images)


@functools.cache
def _outputs() -> tuple[Dataset, ...]:
    sources, exam = _exam()
    return tuple(output.dataset for output in build_outputs(sources, exam))


@functools.cache
def _files(directory: str) -> tuple[Path, ...]:
    return tuple(
        write_part10(ds, Path(directory) / f"out{i}.dcm") for i, ds in enumerate(_outputs())
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    return _files(str(tmp_path_factory.mktemp("outputs")))


def test_outputs_are_one_seg_per_image_then_the_sr() -> None:
    outputs = _outputs()
    assert [ds.Modality for ds in outputs] == ["SEG"] * 4 + ["SR"]
    # One SEG series per image (OHIF shows only the last SEG instance of a series).
    assert len({ds.SeriesInstanceUID for ds in outputs[:4]}) == 4
    assert outputs[4].SeriesInstanceUID not in {ds.SeriesInstanceUID for ds in outputs[:4]}
    for ds in outputs[:4]:
        assert all("RecommendedDisplayCIELabValue" in s for s in ds.SegmentSequence)


def test_every_output_passes_dciodvfy(files: tuple[Path, ...]) -> None:
    for path in files:
        assert dciodvfy_errors(path) == [], dciodvfy_output(path)
        warnings = [line for line in dciodvfy_output(path)[1:] if IGNORED_WARNING not in line]
        # The only other warning is dciodvfy's note that the item makes it "Standard Extended".
        assert all("Standard Extended" in line for line in warnings), warnings


def test_same_inputs_give_the_same_uids() -> None:
    sources, exam = _exam()
    again = [output.dataset for output in build_outputs(sources, exam)]
    for first, second in zip(_outputs(), again, strict=True):
        assert first.SOPInstanceUID == second.SOPInstanceUID
        assert first.SeriesInstanceUID == second.SeriesInstanceUID
    other = replace(exam, model=replace(MODEL, version="1.3.0"))
    assert build_outputs(sources, other)[-1].dataset.SOPInstanceUID != again[-1].SOPInstanceUID


def test_provenance_and_patient_study_copied() -> None:
    sources, _ = _exam()
    for ds in _outputs():
        assert ds.Manufacturer == NODE_MANUFACTURER
        assert "not for clinical use" in ds.SeriesDescription
        for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber"):
            assert ds[keyword].value == sources[0][keyword].value
        model_items = [i for i in ds.ContributingEquipmentSequence if "DeviceUID" in i]
        assert [i.DeviceUID for i in model_items] == [MODEL.device_uid]
        item = model_items[0]
        assert (item.ManufacturerModelName, item.SoftwareVersions) == (MODEL.name, MODEL.version)
        assert item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"


def test_seg_references_its_source_and_carries_the_ohif_fixes() -> None:
    sources, _ = _exam()
    for source, seg in zip(sources, _outputs()[:4], strict=True):
        referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert seg.SOPInstanceUID == output_uid(_exam()[1], "SEG", source.SOPInstanceUID)
        assert list(seg.PatientOrientation) == list(source.PatientOrientation)
        plane = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
        assert [float(v) for v in plane.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == MODEL.name


def test_seg_mask_covers_the_finding() -> None:
    _, exam = _exam()
    # Read with pydicom: highdicom 0.28 cannot re-read a SEG whose Pixel Measures lack
    # Slice Thickness, which a projection image has not.
    seg = _outputs()[0]  # R CC, one finding, one frame
    finding = exam.images[0].prediction.findings[0]
    mask = seg.pixel_array
    assert mask[int(finding.row), int(finding.column)] == 1
    assert 0 < mask.sum() <= np.pi * (finding.radius + 1) ** 2
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "4147007"


def test_image_without_findings_gets_an_empty_segment() -> None:
    seg = _outputs()[1]  # L CC, no finding
    assert len(seg.SegmentSequence) == 1
    assert seg.SegmentSequence[0].SegmentLabel == "No finding"
    assert not seg.pixel_array.any()


def test_sr_content_shows_findings_scores_and_regions(files: tuple[Path, ...]) -> None:
    tree = dsrdump(files[-1])
    assert '(,,"Imaging Measurement Report")' in tree
    assert 'NUM:(,,"Probability of cancer")="83.0" (%,UCUM,"Percent")' in tree
    assert 'NUM:(,,"Probability of cancer")="61.0" (%,UCUM,"Percent")' in tree
    assert tree.count('SCOORD:(,,"Image Region")=(CIRCLE') == 2
    assert '"R CC finding 1"' in tree and '"L MLO finding 1"' in tree
    assert '(24028007,SCT,"Right")' in tree and '(7771000,SCT,"Left")' in tree
    assert '(111591,DCM,"Recall for imaging findings")' in tree
    # TID 1410 planar groups: a region and no "Referenced Segment", which would make each a
    # malformed TID 1411 volumetric group (PS3.16); the Tracking UID links group and segment.
    assert '"Referenced Segment"' not in tree
    assert "NOT FOR CLINICAL USE" in dsr2html(files[-1])


def test_sr_references_sources_and_segs() -> None:
    sources, _ = _exam()
    sr = _outputs()[-1]
    evidence = {
        instance.ReferencedSOPInstanceUID
        for series in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    expected = {ds.SOPInstanceUID for ds in sources} | {s.SOPInstanceUID for s in _outputs()[:4]}
    assert evidence == expected


def test_mismatched_inputs_raise() -> None:
    sources, exam = _exam()
    with pytest.raises(ValueError, match="no source dataset"):
        build_segmentations(sources[:3], exam)
    small = replace(exam.images[0].prediction, heatmap=np.zeros((8, 8), np.float32))
    broken = replace(exam, images=[replace(exam.images[0], prediction=small)])
    with pytest.raises(ValueError, match="pixel matrix"):
        build_segmentations(sources, broken)
    bad_score = replace(exam.images[0].prediction, score=1.5)
    bad = replace(exam, images=[replace(exam.images[0], prediction=bad_score), *exam.images[1:]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        build_measurement_report(sources, bad, list(_outputs()[:4]))


def test_finding_mask_falls_back_to_the_disc_below_threshold() -> None:
    heat = np.zeros((32, 32), np.float32)
    finding = Finding(column=16.0, row=16.0, radius=4.0, score=0.5)
    disc = finding_mask(heat, finding, 0.5)
    heat[14:18, 14:18] = 0.9
    assert finding_mask(heat, finding, 0.5).sum() == 16 < disc.sum()
    with pytest.raises(ValueError, match="outside"):
        finding_mask(heat, replace(finding, column=40.0), 0.5)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.0, 47.99),
    st.floats(0.0, 39.99),
    st.floats(0.1, 30.0),
    st.floats(0.0, 1.0),
)
def test_finding_mask_is_the_disc_rule_over_the_whole_image(
    column: float, row: float, radius: float, threshold: float
) -> None:
    """The mask is computed in the finding's box only; it must equal the rule applied to
    every pixel of the image (centres at +0.5, the centre pixel always in), edges included."""
    heat = np.random.default_rng(7).random((40, 48), dtype=np.float32)
    finding = Finding(column=column, row=row, radius=radius, score=0.5)
    row_index, column_index = np.ogrid[:40, :48]
    disc = (column_index + 0.5 - column) ** 2 + (row_index + 0.5 - row) ** 2 <= radius**2
    disc[int(row), int(column)] = True
    expected = disc & (heat >= threshold)
    expected = expected if expected.any() else disc
    assert np.array_equal(finding_mask(heat, finding, threshold), expected)
    assert finding_peak(heat, finding) == float(heat[disc].max())


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5))
def test_output_uids_are_valid(parts: list[str]) -> None:
    exam = ExamResult(parts[0], replace(MODEL, model_id=parts[-1]), [])
    assert is_valid_uid(output_uid(exam, "SR", *parts[1:2]))
    assert is_valid_uid(derive_uid(*parts))


def _num_values(ds: Dataset, name: str) -> list[float]:
    found = []
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeMeaning == name:
            found.append(float(item.MeasuredValueSequence[0].NumericValue))
        found.extend(_num_values(item, name))
    return found


@settings(max_examples=15, deadline=None)
@given(
    st.floats(0.0, 1.0, allow_nan=False),
    st.floats(0.0, 1.0, allow_nan=False),
)
def test_scores_round_trip_through_the_sr(finding_score: float, other_score: float) -> None:
    sources, exam = _exam()
    first = exam.images[0]
    finding = replace(first.prediction.findings[0], score=finding_score)
    prediction = replace(first.prediction, score=finding_score, findings=[finding])
    images = [replace(first, prediction=prediction)]
    for image in exam.images[1:]:
        images.append(replace(image, prediction=replace(image.prediction, score=other_score)))
    scored = replace(exam, images=images)
    sr = build_measurement_report(sources, scored, list(_outputs()[:4]))
    values = _num_values(sr, "Probability of cancer")
    right, left = scored.breast_score("R"), scored.breast_score("L")
    assert right is not None and left is not None
    # The findings' groups, then the Qualitative Evaluations: exam, right breast, left breast.
    expected = [finding_score, SCORES["L MLO"], scored.score, right, left]
    assert values == pytest.approx([100 * v for v in expected], abs=1e-6)


def _children(item: Dataset, meaning: str) -> list[Dataset]:
    return [
        child
        for child in item.get("ContentSequence", [])
        if child.ConceptNameCodeSequence[0].CodeMeaning == meaning
    ]


def test_highdicom_reads_the_report_back(files: tuple[Path, ...]) -> None:
    import highdicom as hd

    report = hd.sr.srread(files[-1]).content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = report.get_planar_roi_measurement_groups()
    assert [str(g.tracking_identifier) for g in groups] == ["R CC finding 1", "L MLO finding 1"]
    assert all(g.roi is not None and g.roi.graphic_type.value == "CIRCLE" for g in groups)
    # No group without a region: a viewer places every measurement group on an image.
    assert report.get_image_measurement_groups() == []


def test_exam_and_breast_scores_are_qualitative_evaluations(files: tuple[Path, ...]) -> None:
    import pydicom

    sr = pydicom.dcmread(files[-1])
    (measurements,) = _children(sr, "Imaging Measurements")
    for group in measurements.ContentSequence:  # each one a region on its image (TID 1410)
        assert [i.ValueType for i in group.ContentSequence].count("SCOORD") == 1
    (evaluations,) = _children(sr, "Qualitative Evaluations")
    assert evaluations.ValueType == "CONTAINER"
    (follow_up,) = _children(evaluations, "Recommended Follow-up")
    exam = _exam()[1]
    assert exam.recall and follow_up.ConceptCodeSequence[0].CodeValue == "111591"
    scores: dict[str | None, float] = {}
    for item in _children(evaluations, "Probability of cancer"):
        laterality = [m.ConceptCodeSequence[0].CodeMeaning for m in item.get("ContentSequence", [])]
        assert item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "%"
        scores[laterality[0] if laterality else None] = float(
            item.MeasuredValueSequence[0].NumericValue
        )
    expected = {None: exam.score, "Right": exam.breast_score("R"), "Left": exam.breast_score("L")}
    assert scores == pytest.approx({k: 100 * v for k, v in expected.items() if v is not None})
    (operating_point,) = _children(evaluations, "CAD Operating Point")
    assert float(operating_point.MeasuredValueSequence[0].NumericValue) == pytest.approx(
        100 * exam.model.operating_point
    )
