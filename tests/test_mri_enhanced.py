"""Enhanced MR (multi-frame) DCE input: the synthetic writer is valid, the assembly gives the
classic assembly's volume, the kinetics find the phantom's lesions, and every output
references the source frames (Referenced Frame Number) and is valid."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pydicom.dataset import Dataset
from validators import dciodvfy_errors, dciodvfy_output, pixelmed_sr_errors

from node.errors import InvalidInput
from node.mri import kinetic_outputs
from node.mri.assembly import DceExam, assemble_dce
from node.mri.frames import ENHANCED_MR_IMAGE_STORAGE, frame_header
from node.mri.phantom import DcePhantom, make_dce_phantom
from node.mri.synthetic_dicom import dce_study

LAYOUTS = {"one object per phase": False, "one object of every phase": True}
# The node's writers' known dciodvfy warnings (see tests/test_mri_writers.py): DeviceUID in
# Contributing Equipment, the empty bilateral Laterality, the private measurement codes.
_KNOWN = ("DeviceUID(0018,1002)", "Laterality(0020,0060)", "<99MMNODE>")


@pytest.fixture(scope="module")
def phantom() -> DcePhantom:
    return make_dce_phantom(seed=5, slices=12, rows=64, columns=96)


@pytest.fixture(scope="module")
def classic(phantom: DcePhantom) -> DceExam:
    return assemble_dce(dce_study(5, phantom)[0])


def _study(phantom: DcePhantom, single: bool) -> list[Dataset]:
    return dce_study(5, phantom, enhanced=True, single_object=single)[0]


def _enhanced(datasets: list[Dataset]) -> list[Dataset]:
    return [ds for ds in datasets if ds.SOPClassUID == ENHANCED_MR_IMAGE_STORAGE]


def _warnings(ds: Dataset, known: tuple[str, ...] = ()) -> list[str]:
    return [
        line
        for line in dciodvfy_output(ds)
        if line.startswith("Warning") and not any(k in line for k in known)
    ]


@pytest.mark.parametrize("single", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_the_enhanced_writer_is_valid(phantom: DcePhantom, single: bool) -> None:
    objects = _enhanced(_study(phantom, single))
    assert len(objects) == (1 if single else 6)
    for ds in (objects[0], objects[-1]):  # the pre-contrast one has no contrast module
        assert dciodvfy_errors(ds) == [], dciodvfy_output(ds)
        assert _warnings(ds) == []
    last = objects[-1].PerFrameFunctionalGroupsSequence[-1]
    assert last.FrameContentSequence[0].TemporalPositionIndex == 6
    assert list(last.FrameContentSequence[0].DimensionIndexValues) == [6, 12]


@pytest.mark.parametrize("single", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_enhanced_assembly_equals_the_classic_one(
    phantom: DcePhantom, classic: DceExam, single: bool
) -> None:
    datasets = _study(phantom, single)
    exam = assemble_dce(reversed(datasets))
    assert [p.time_s for p in exam.phases] == [p.time_s for p in classic.phases]
    assert (exam.pixel_spacing_mm, exam.slice_spacing_mm, exam.orientation) == (
        classic.pixel_spacing_mm,
        classic.slice_spacing_mm,
        classic.orientation,
    )
    assert {i.SeriesDescription for i in exam.ignored} == {"ax T2 TSE", "ax DCE SUB post 1"}
    for mine, theirs in zip(exam.phases, classic.phases, strict=True):
        np.testing.assert_array_equal(mine.volume(), theirs.volume())
        assert [mine.header(i).position for i in range(12)] == [
            theirs.header(i).position for i in range(12)
        ]
    frames = exam.phases[2].frames
    assert frames == (tuple(range(25, 37)) if single else tuple(range(1, 13)))


def test_kinetics_find_the_phantom_lesions(phantom: DcePhantom) -> None:
    result, _ = kinetic_outputs(_study(phantom, True), summary=False)
    assert len(result.candidates) == len(phantom.lesions) == 3
    for candidate in result.candidates:
        truth = int(np.bincount(phantom.labels[result.labels == candidate.number]).argmax())
        assert truth > 0 and candidate.curve == phantom.lesions[truth - 1].curve
    lesion = phantom.voxel_curve > 0
    assert float((result.curve[lesion] == phantom.voxel_curve[lesion]).mean()) == 1.0


def _position(ds: Dataset, frame: int) -> tuple[float, ...]:
    return frame_header(ds, frame).position


@pytest.mark.parametrize("single", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_outputs_reference_the_source_frames_and_are_valid(
    phantom: DcePhantom, single: bool
) -> None:
    datasets = _study(phantom, single)
    sources = {str(ds.SOPInstanceUID): ds for ds in _enhanced(datasets)}
    result, outputs = kinetic_outputs(datasets)
    seg, sr, *images = outputs
    for ds in outputs:
        assert dciodvfy_errors(ds) == [], (ds.SOPClassUID.name, dciodvfy_output(ds))
        assert _warnings(ds, _KNOWN) == [], ds.SOPClassUID.name
    assert pixelmed_sr_errors(sr) == []
    # SEG: each frame derives from the source frames at its position (every phase's frame
    # when one object holds them all, the first post-contrast phase's otherwise)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        where = tuple(float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient)
        items = frame.DerivationImageSequence[0].SourceImageSequence
        assert len(items) == (6 if single else 1)
        for item in items:
            source = sources[item.ReferencedSOPInstanceUID]
            assert _position(source, int(item.ReferencedFrameNumber)) == where
    # SR: each measurement group's region is drawn on the frame of the post-contrast slice
    # where its candidate is largest (the SCOORD's SELECTED FROM image names that frame)
    groups = next(
        item
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "126010"  # Imaging Measurements
    ).ContentSequence
    frames = [
        ref
        for group in groups
        for item in group.ContentSequence
        if item.ValueType == "SCOORD"
        for image in item.ContentSequence
        if image.ValueType == "IMAGE"
        for ref in image.ReferencedSOPSequence
    ]
    assert len(frames) == len(result.candidates) == 3
    for ref, candidate in zip(frames, result.candidates, strict=True):
        source = sources[ref.ReferencedSOPInstanceUID]
        z = _position(source, int(ref.ReferencedFrameNumber))[2]  # one frame: a single value
        z0 = -(phantom.phases.shape[1] - 1) * phantom.slice_thickness_mm / 2
        largest = int(np.argmax((result.labels == candidate.number).sum(axis=(1, 2))))
        assert z == pytest.approx(z0 + largest * 3.0)
    # colour map and summary SC: Source Image Sequence with Referenced Frame Number; the PDF's
    # Source Instance Sequence names instances only (SOP Instance Reference Macro)
    pdfs = [ds for ds in images if "SourceInstanceSequence" in ds]
    assert len(pdfs) == 1 and len(images) > 2
    for image in images:
        if image in pdfs:
            reference = image.SourceInstanceSequence[0]
            assert "ReferencedFrameNumber" not in reference
            assert reference.ReferencedSOPInstanceUID in sources
            continue
        reference = image.SourceImageSequence[0]
        source = sources[reference.ReferencedSOPInstanceUID]
        assert 1 <= int(reference.ReferencedFrameNumber) <= int(source.NumberOfFrames)


def test_bad_enhanced_input_is_refused(phantom: DcePhantom) -> None:
    datasets = _study(phantom, True)
    enhanced = _enhanced(datasets)[0]
    lost = copy.deepcopy(enhanced)
    del lost.PerFrameFunctionalGroupsSequence[7].PlanePositionSequence
    with pytest.raises(InvalidInput, match="frame 8 has no ImagePositionPatient"):
        assemble_dce([lost])
    short = copy.deepcopy(enhanced)
    short.NumberOfFrames = 71
    with pytest.raises(InvalidInput, match="71 frames and 72"):
        assemble_dce([short])
    moved = copy.deepcopy(enhanced)
    for frame in moved.PerFrameFunctionalGroupsSequence[60:]:  # the last phase elsewhere
        frame.PlanePositionSequence[0].ImagePositionPatient[2] += 1.5
    with pytest.raises(InvalidInput, match="phase 6 has its slices at other positions"):
        assemble_dce([moved])
    doubled = copy.deepcopy(enhanced)
    for frame in doubled.PerFrameFunctionalGroupsSequence[12:24]:  # phase 2 claims phase 1
        frame.FrameContentSequence[0].TemporalPositionIndex = 1
    with pytest.raises(InvalidInput, match=r"24, 64, 96.*phases must share one geometry"):
        assemble_dce([doubled])


def test_per_frame_orientation_and_time_offsets_order_phases(phantom: DcePhantom) -> None:
    """Plane Orientation per frame instead of shared; phases without Temporal Position Index
    (one object each) ordered by Temporal Position Time Offset, then Frame Acquisition time."""
    objects = [copy.deepcopy(ds) for ds in _enhanced(_study(phantom, False))]
    for ds in objects:
        shared = ds.SharedFunctionalGroupsSequence[0]
        orientation = shared.PlaneOrientationSequence
        del shared.PlaneOrientationSequence
        for frame in ds.PerFrameFunctionalGroupsSequence:
            frame.PlaneOrientationSequence = copy.deepcopy(orientation)
            del frame.FrameContentSequence[0].TemporalPositionIndex
        ds.SeriesNumber = 99  # the series order says nothing
    exam = assemble_dce(reversed(objects))
    assert [p.time_s for p in exam.phases] == [0.0, 60.0, 120.0, 180.0, 240.0, 300.0]
    assert exam.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    for ds in objects:
        for frame in ds.PerFrameFunctionalGroupsSequence:
            del frame.TemporalPositionSequence
    exam = assemble_dce(reversed(objects))
    assert [p.time_s for p in exam.phases] == [0.0, 60.0, 120.0, 180.0, 240.0, 300.0]
    assert exam.phases[0].slices[0].SeriesDescription == "ax DCE pre"


def test_one_object_without_temporal_position_index_is_split_by_time_offset(
    phantom: DcePhantom, classic: DceExam
) -> None:
    enhanced = copy.deepcopy(_enhanced(_study(phantom, True))[0])
    for frame in enhanced.PerFrameFunctionalGroupsSequence:
        del frame.FrameContentSequence[0].TemporalPositionIndex
    exam = assemble_dce([enhanced])
    assert [p.time_s for p in exam.phases] == [0.0, 60.0, 120.0, 180.0, 240.0, 300.0]
    np.testing.assert_array_equal(exam.phases[5].volume(), classic.phases[5].volume())
    for frame in enhanced.PerFrameFunctionalGroupsSequence:
        del frame.TemporalPositionSequence
    with pytest.raises(InvalidInput, match="1 DCE phase"):  # nothing tells the phases apart
        assemble_dce([enhanced])
