"""DCE assembly: phases grouped and ordered, other series ignored with a reason, bad series refused."""

from __future__ import annotations

import copy
import random

import pytest
from pydicom.dataset import Dataset

from node.dicom.uids import derive_uid
from node.errors import InvalidInput
from node.mri.assembly import assemble_dce, non_dce_reason
from node.mri.phantom import make_dce_phantom
from node.mri.synthetic_dicom import dce_study


@pytest.fixture(scope="module")
def study() -> list[Dataset]:
    return dce_study(5, make_dce_phantom(seed=5, slices=10, rows=48, columns=64))[0]


def _series(study: list[Dataset], description: str) -> list[Dataset]:
    return [ds for ds in study if ds.SeriesDescription == description]


def test_phases_in_order_with_times_and_ignored_series(study: list[Dataset]) -> None:
    shuffled = list(study)
    random.Random(1).shuffle(shuffled)
    exam = assemble_dce(shuffled)
    assert [p.slices[0].SeriesDescription for p in exam.phases] == [
        "ax DCE pre",
        *(f"ax DCE post {k}" for k in range(1, 6)),
    ]
    assert [p.time_s for p in exam.phases] == [0.0, 60.0, 120.0, 180.0, 240.0, 300.0]
    positions = [float(ds.ImagePositionPatient[2]) for ds in exam.pre.slices]
    assert positions == sorted(positions) and len(positions) == 10
    reasons = {i.SeriesDescription: i.reason for i in exam.ignored}
    assert set(reasons) == {"ax T2 TSE", "ax DCE SUB post 1"}
    assert "T2-weighted" in reasons["ax T2 TSE"]
    assert "subtraction" in reasons["ax DCE SUB post 1"]


def test_one_series_with_temporal_positions_is_split_into_phases(study: list[Dataset]) -> None:
    merged = []
    for k in range(6):
        for ds in _series(study, "ax DCE pre" if k == 0 else f"ax DCE post {k}"):
            ds = copy.deepcopy(ds)
            ds.SeriesInstanceUID = derive_uid("one series")
            merged.append(ds)
    exam = assemble_dce(merged)
    assert len(exam.phases) == 6 and exam.ignored == ()
    assert exam.phases[3].time_s == 180.0


def test_without_temporal_positions_acquisition_time_orders(study: list[Dataset]) -> None:
    images = []
    for ds in study:
        ds = copy.deepcopy(ds)
        if "TemporalPositionIdentifier" in ds:
            del ds.TemporalPositionIdentifier
            ds.SeriesNumber = 100 - int(ds.SeriesNumber)  # reversed: must not decide
        images.append(ds)
    exam = assemble_dce(images)
    assert [p.slices[0].SeriesDescription for p in exam.phases][:2] == [
        "ax DCE pre",
        "ax DCE post 1",
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"SeriesDescription": "ep2d_diff b800"}, "diffusion"),
        ({"SeriesDescription": "ADC map"}, "apparent diffusion"),
        ({"SequenceName": "*tse2d1_15"}, "turbo spin echo"),
        ({"ImageType": ["DERIVED", "PRIMARY", "M", "SUB"]}, "subtraction"),
        ({"ImageType": ["DERIVED", "SECONDARY", "MPR"]}, "derived"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4.2"}, "not an MR image"),  # spectroscopy
        ({"Modality": "CT"}, "not an MR image"),
    ],
)
def test_non_dce_series_are_recognised(
    study: list[Dataset], change: dict[str, object], reason: str
) -> None:
    ds = copy.deepcopy(_series(study, "ax DCE post 2")[0])
    assert non_dce_reason(ds) is None
    for keyword, value in change.items():
        setattr(ds, keyword, value)
    assert reason in (non_dce_reason(ds) or "")


def test_too_few_phases_is_invalid(study: list[Dataset]) -> None:
    images = _series(study, "ax DCE pre") + _series(study, "ax DCE post 1")
    with pytest.raises(InvalidInput, match="2 DCE phase"):
        assemble_dce(images)


def test_a_phase_missing_slices_is_invalid(study: list[Dataset]) -> None:
    images = [
        ds
        for ds in study
        if not (ds.SeriesDescription == "ax DCE post 3" and ds.InstanceNumber == 4)
    ]
    with pytest.raises(InvalidInput, match="one geometry"):
        assemble_dce(images)


def test_a_phase_elsewhere_is_invalid(study: list[Dataset]) -> None:
    images = []
    for ds in study:
        if ds.SeriesDescription == "ax DCE post 2":
            ds = copy.deepcopy(ds)
            ds.ImagePositionPatient = [
                *ds.ImagePositionPatient[:2],
                float(ds.ImagePositionPatient[2]) + 7,
            ]
        images.append(ds)
    with pytest.raises(InvalidInput, match="same volume"):
        assemble_dce(images)


def test_phases_of_unknown_order_are_invalid(study: list[Dataset]) -> None:
    images = []
    for ds in study:
        ds = copy.deepcopy(ds)
        for keyword in ("TemporalPositionIdentifier", "AcquisitionTime", "SeriesNumber"):
            if keyword in ds:
                delattr(ds, keyword)
        images.append(ds)
    with pytest.raises(InvalidInput, match="order is unknown"):
        assemble_dce(images)


def test_two_studies_and_nothing_are_invalid(study: list[Dataset]) -> None:
    other = copy.deepcopy(study[0])
    other.StudyInstanceUID = derive_uid("another study")
    with pytest.raises(InvalidInput, match="2 studies"):
        assemble_dce([*study, other])
    with pytest.raises(InvalidInput, match="no MR images"):
        assemble_dce([])
