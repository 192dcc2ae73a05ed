"""The synthetic screening exam is a valid Digital Mammography X-Ray study (PS3.3 A.26.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from validators import dciodvfy_errors, dciodvfy_output

from node.dicom.uids import derive_uid, is_valid_uid
from node.synthetic.dicom import (
    MG_FOR_PRESENTATION,
    MG_FOR_PROCESSING,
    SCREENING_VIEWS,
    SYNTHETIC_MANUFACTURER,
    mammogram_dataset,
    synthetic_exam,
    write_exam,
)
from node.synthetic.phantom import patient_orientation

SIZE = {"rows": 256, "columns": 208}


# dciodvfy knows only the DX defined terms for View Position (AP, PA, ...); MG units write
# CC / MLO there and the View Code Sequence carries the coded view (PS3.3 C.8.11.7).
def _known_warning(line: str) -> bool:
    return "ViewPosition" in line and "Unrecognized defined term" in line


@pytest.mark.parametrize("for_processing", [False, True], ids=["presentation", "processing"])
def test_all_four_views_pass_dciodvfy(tmp_path: Path, for_processing: bool) -> None:
    paths = write_exam(tmp_path, 11, for_processing=for_processing, **SIZE)
    assert len(paths) == 4
    for path in paths:
        lines = dciodvfy_output(path)
        assert dciodvfy_errors(path) == [], lines
        unexpected = [line for line in lines[1:] if not _known_warning(line)]
        assert unexpected == [], unexpected
        ds = pydicom.dcmread(path)
        expected = MG_FOR_PROCESSING if for_processing else MG_FOR_PRESENTATION
        assert ds.SOPClassUID == expected
        assert ds.PresentationIntentType == (
            "FOR PROCESSING" if for_processing else "FOR PRESENTATION"
        )
        assert ("VOILUTFunction" in ds) is not for_processing


def test_exam_holds_the_four_screening_views_of_one_study() -> None:
    exam = synthetic_exam(5, lesions_per_image=(1, 0, 0, 1), **SIZE)
    views = [(ds.ImageLaterality, ds.ViewPosition) for ds, _ in exam]
    assert views == list(SCREENING_VIEWS)
    assert len({ds.StudyInstanceUID for ds, _ in exam}) == 1
    assert len({ds.SOPInstanceUID for ds, _ in exam}) == 4
    assert [len(findings) for _, findings in exam] == [1, 0, 0, 1]
    for ds, _ in exam:
        assert ds.Modality == "MG"
        assert ds.Manufacturer == SYNTHETIC_MANUFACTURER
        assert ds.BitsStored == 12 and ds.BitsAllocated == 16
        assert ds.PresentationLUTShape == "IDENTITY"
        assert tuple(ds.PatientOrientation) == patient_orientation(
            ds.ImageLaterality, ds.ViewPosition
        )
        view_code = ds.ViewCodeSequence[0]
        assert view_code.CodingSchemeDesignator == "SCT"
        assert view_code.CodeValue == {"CC": "399162004", "MLO": "399368009"}[ds.ViewPosition]
        assert ds.AnatomicRegionSequence[0].CodeValue == "76752008"
        assert ds.pixel_array.shape == (SIZE["rows"], SIZE["columns"])


def test_same_seed_same_uids_other_seed_other_uids() -> None:
    def uids(seed: int) -> list[tuple[str, str, str]]:
        return [
            (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
            for ds, _ in synthetic_exam(seed, **SIZE)
        ]

    first = uids(21)
    assert first == uids(21)
    assert all(is_valid_uid(uid) for triple in first for uid in triple)
    assert {t[0] for t in first}.isdisjoint({t[0] for t in uids(22)})


def _image(**overrides: object) -> pydicom.Dataset:
    kwargs: dict[str, object] = {
        "laterality": "L",
        "view": "CC",
        "patient_id": "P",
        "patient_name": "A^B",
        "study_instance_uid": derive_uid("study"),
        "series_instance_uid": derive_uid("series"),
        "sop_instance_uid": derive_uid("sop"),
        "instance_number": 1,
    }
    pixels = overrides.pop("pixels", np.zeros((64, 64), np.uint16))
    kwargs.update(overrides)
    return mammogram_dataset(pixels, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"laterality": "B"}, "Image Laterality"),
        ({"view": "ML"}, "View Position"),
        ({"pixels": np.zeros((64, 64), np.float32)}, "uint16"),
        ({"pixels": np.full((64, 64), 4096, np.uint16)}, "Bits Stored"),
        ({"sop_instance_uid": "1.02.3"}, "not a valid UID"),
    ],
)
def test_invalid_arguments_raise_with_the_dicom_reason(
    overrides: dict[str, object], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        _image(**overrides)


def test_bad_per_view_counts_raise() -> None:
    with pytest.raises(ValueError, match="lesions_per_image"):
        synthetic_exam(1, lesions_per_image=(1, 2), **SIZE)
