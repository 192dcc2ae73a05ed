"""Dataset import (mini-MIAS layout, DICOM, CBIS-DDSM), de-identification, QC, splits, report."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from node.cli import main
from node.datasets.deid import Pseudonymiser, deidentify
from node.datasets.importers import ImportOptions, run_import
from node.datasets.manifest import ImageRecord, read_manifest, read_rejected
from node.datasets.report import summarise
from node.datasets.split import assign_splits
from node.dicom.pixels import presentation_pixels, read_image_file
from node.domain import ImagePrediction
from node.errors import DatasetError
from node.inference.predict import predict_paths
from node.inference.runner import prepare
from node.inference.scoring import source_image
from node.synthetic.dicom import synthetic_exam

MIAS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mias-dev"


def _breast(size: int = 64, seed: int = 0, blob: tuple[int, int] | None = None) -> np.ndarray:
    """A bright half-disc 'breast' against the left edge, optionally a brighter blob."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:size, :size]
    image = np.where(np.hypot(rr - size / 2, cc) < size * 0.6, 120, 0).astype(np.float64)
    image += rng.normal(0, 6, image.shape) * (image > 0)
    if blob:
        image[np.hypot(rr - blob[0], cc - blob[1]) < 5] = 230
    return np.clip(image, 0, 255).astype(np.uint8)


def write_mias_layout(folder: Path) -> None:
    """mdb001 (R, benign + malignant rows), mdb002 (L, normal), mdb003 (R, spread calcs),
    mdb004 (no label row: rejected), mdb005 (label row, no file: rejected)."""
    folder.mkdir(parents=True)
    for n, blob in ((1, (20, 30)), (2, None), (3, None), (4, None)):
        Image.fromarray(_breast(seed=n, blob=blob)).save(folder / f"mdb{n:03d}.png")
    rows = [
        ["refnum", "background_tissue", "abnormality_class", "severity", "x", "y", "radius"],
        ["mdb001", "F", "CIRC", "B", "30", "44", "6"],  # row = 64 - 44 = 20
        ["mdb001", "F", "SPIC", "M", "10", "10", "3"],
        ["mdb002", "D", "NORM", "", "", "", ""],
        ["mdb003", "G", "CALC", "M", "", "", ""],
        ["mdb005", "G", "NORM", "", "", "", ""],
    ]
    with (folder / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_mias_layout_import(tmp_path: Path) -> None:
    write_mias_layout(tmp_path / "src")
    out = tmp_path / "ds"
    code = main(["data", "import", str(tmp_path / "src"), "--format", "mias", "--out", str(out)])
    assert code == 0
    records = {r.image_id: r for r in read_manifest(out)}
    assert set(records) == {"mdb001", "mdb002", "mdb003"}
    first = records["mdb001"]
    assert (first.label, first.laterality, first.patient_id, first.density) == (
        "malignant",
        "R",
        "mdb001",
        "fatty",
    )
    assert first.abnormality == "CIRC+SPIC"
    assert (first.lesions[0].column, first.lesions[0].row) == (30.0, 20.0)  # bottom-left origin
    assert records["mdb002"].patient_id == "mdb001"  # the same woman's left breast
    assert records["mdb002"].laterality == "L" and records["mdb002"].label == "normal"
    assert records["mdb003"].label == "malignant" and records["mdb003"].lesions == ()
    reasons = {(Path(r.source).name, r.reason) for r in read_rejected(out)}
    assert reasons == {("mdb004.png", "no-label"), ("mdb005", "missing-file")}
    stored = np.asarray(Image.open(out / first.path))
    assert stored.dtype == np.uint8 and np.array_equal(stored, _breast(seed=1, blob=(20, 30)))
    with pytest.raises(DatasetError, match="already holds"):
        run_import(ImportOptions(tmp_path / "src", out, "mias", "x"))


@pytest.mark.skipif(not MIAS.is_dir(), reason="mini-MIAS dev set not at ../shared/data/mias-dev")
def test_real_mias_coordinates(tmp_path: Path) -> None:
    """On the real labels: rows are flipped from the bottom-left origin (mdb023: y=681)."""
    src = tmp_path / "mias"
    src.mkdir()
    for name in ("mdb023.png", "mdb024.png"):
        (src / name).symlink_to(MIAS / name)
    with (MIAS / "labels.csv").open() as f, (src / "labels.csv").open("w") as g:
        g.writelines(line for line in f if line.startswith(("refnum", "mdb023", "mdb024")))
    run_import(ImportOptions(src, tmp_path / "ds", "mias", "mias-test"))
    records = {r.image_id: r for r in read_manifest(tmp_path / "ds")}
    lesion = records["mdb023"].lesions[0]
    assert (lesion.column, lesion.row, lesion.radius) == (538.0, 1024.0 - 681.0, 29.0)
    assert records["mdb023"].label == "malignant" and records["mdb024"].patient_id == "mdb023"


def _write(ds: pydicom.Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_import_deidentifies_and_rejects_with_reasons(tmp_path: Path) -> None:
    src = tmp_path / "src"
    exam = [ds for ds, _ in synthetic_exam(7, rows=128, columns=104)]
    for i, ds in enumerate(exam):
        ds.add_new(0x00091010, "LO", "private vendor note")
        ds.InstitutionName = "St Example"
        _write(ds, src / f"img{i}.dcm")
    duplicate = exam[0].copy()
    duplicate.SOPInstanceUID = "1.2.3.4.5"
    _write(duplicate, src / "zz_dup.dcm")
    ct = exam[1].copy()
    ct.Modality, ct.SOPInstanceUID = "CT", "1.2.3.4.6"
    _write(ct, src / "ct.dcm")
    raw = next(ds for ds, _ in synthetic_exam(8, rows=128, columns=104, for_processing=True))
    _write(raw, src / "raw.dcm")
    blank = exam[2].copy()
    blank.SOPInstanceUID = "1.2.3.4.7"
    blank.PixelData = np.zeros((128, 104), np.uint16).tobytes()
    _write(blank, src / "blank.dcm")
    (src / "notes.txt").write_text("not DICOM")
    key = tmp_path / "secret" / "reid.csv"
    out = tmp_path / "ds"
    code = main(
        ["data", "import", str(src), "--out", str(out), "--reid-key", str(key), "--keep-dicom"]
    )
    assert code == 0
    records = read_manifest(out)
    assert len(records) == 4 and {r.label for r in records} == {"unknown"}
    assert len({r.patient_id for r in records}) == 1
    assert records[0].patient_id != exam[0].PatientID
    reasons = {Path(r.source).name: r.reason for r in read_rejected(out)}
    assert reasons == {
        "zz_dup.dcm": "duplicate",
        "ct.dcm": "wrong-modality",
        "raw.dcm": "for-processing",
        "blank.dcm": "blank",
        "notes.txt": "unreadable",
    }
    kept = [pydicom.dcmread(p) for p in sorted((out / "dicom").glob("*.dcm"))]
    assert len(kept) == 4
    originals = {str(ds.StudyInstanceUID) for ds in exam}
    assert len({str(ds.StudyInstanceUID) for ds in kept}) == 1  # remapped consistently
    for ds in kept:
        assert str(ds.StudyInstanceUID) not in originals
        assert ds.PatientName == "" and ds.PatientBirthDate == "" and ds.StudyDate == ""
        assert "InstitutionName" not in ds and ds.PatientIdentityRemoved == "YES"
        assert not any(e.tag.is_private for e in ds)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    with key.open() as f:
        rows = list(csv.DictReader(f))
    assert ("PatientID", exam[0].PatientID) in {(r["kind"], r["original"]) for r in rows}
    assert any(r["pseudonym"] == records[0].patient_id for r in rows)


def test_reid_key_must_stay_outside_the_dataset(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    options = ImportOptions(
        tmp_path / "src", tmp_path / "ds", "dicom", "x", reid_key=tmp_path / "ds" / "key.csv"
    )
    with pytest.raises(DatasetError, match="outside"):
        run_import(options)


def test_clean_descriptors_option_keeps_text_without_identifiers() -> None:
    ds = synthetic_exam(3, rows=64, columns=64)[0][0]
    ds.StudyDescription = f"Screening {ds.PatientID} bilateral"
    deidentify(ds, Pseudonymiser(b"k" * 32), clean_descriptors=True)
    assert ds.StudyDescription == "Screening bilateral"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113105"]


def test_cbis_ddsm_case_descriptions(tmp_path: Path) -> None:
    src = tmp_path / "src"
    exam = [ds for ds, _ in synthetic_exam(11, rows=128, columns=104)]
    keys = ["Mass-Training_P_00001_RIGHT_CC", "Mass-Training_P_00001_LEFT_CC"]
    for ds, key in zip(exam[:2], keys, strict=True):
        ds.PatientID = key  # as TCIA stores CBIS-DDSM
        _write(ds, src / key / "1-1.dcm")
    with (src / "mass_case_description_train_set.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["patient_id", "breast_density", "left or right breast", "image view",
             "abnormality type", "pathology", "image file path"]
        )  # fmt: skip
        writer.writerow(
            ["P_00001", "3", "RIGHT", "CC", "mass", "MALIGNANT", f"{keys[0]}/x/1-1.dcm"]
        )
        writer.writerow(
            [
                "P_00001",
                "3",
                "LEFT",
                "CC",
                "mass",
                "BENIGN_WITHOUT_CALLBACK",
                f"{keys[1]}/x/1-1.dcm",
            ]
        )
    result = run_import(ImportOptions(src, tmp_path / "ds", "cbis-ddsm", "cbis"))
    by_side = {r.laterality: r for r in result.records}
    assert by_side["R"].label == "malignant" and by_side["L"].label == "benign"
    assert by_side["R"].density_acr == "c" and by_side["R"].view == "CC"
    assert by_side["R"].patient_id == by_side["L"].patient_id != "P_00001"


class _LateralitySpy:
    """Stands in for a loaded model: records the laterality ``predict_paths`` serves it with."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict(self, pixels: np.ndarray, laterality: str) -> ImagePrediction:
        self.seen.append(laterality)
        return ImagePrediction(score=0.0, heatmap=np.zeros(pixels.shape, np.float32))


def test_side_only_in_patient_orientation_is_mirrored_alike_in_training_and_service(
    tmp_path: Path,
) -> None:
    """Train/serve skew: a right CC whose side is only in Patient Orientation ("P\\L",
    PS3.3 C.7.6.1.1.1) gets the same laterality, so the same mirroring, from the importer,
    the worker and ``predict``."""
    ds = next(ds for ds, _ in synthetic_exam(12, rows=128, columns=104))
    del ds.ImageLaterality
    ds.SeriesDescription = "Synthetic phantom"
    assert list(ds.PatientOrientation) == ["P", "L"] and "Laterality" not in ds
    _write(ds, tmp_path / "src" / "r_cc.dcm")
    (record,) = run_import(ImportOptions(tmp_path / "src", tmp_path / "ds", "dicom", "x")).records

    served = source_image(ds)
    spy = _LateralitySpy()
    list(predict_paths([tmp_path / "src" / "r_cc.dcm"], spy))  # type: ignore[arg-type]
    assert record.laterality == served.ImageLaterality == spy.seen[0] == "R"
    assert record.view == served.ViewPosition == "CC"
    stored, _ = read_image_file(tmp_path / "ds" / record.path)
    _, trained = prepare(stored, record.laterality, (64, 64))
    _, serving = prepare(presentation_pixels(ds), served.ImageLaterality, (64, 64))
    assert trained.flipped == serving.flipped is True


def _records(n_patients: int) -> list[ImageRecord]:
    records = []
    for p in range(n_patients):
        label = ("normal", "benign", "malignant")[p % 3]
        for side in ("R", "L"):
            records.append(
                ImageRecord(f"i{p}{side}", f"p{p}", side, "MLO", label if side == "R" else "normal")
            )
    return records


def test_splits_are_by_patient_stratified_and_seeded() -> None:
    records = _records(30)
    first = assign_splits(records, 0.3, seed=1)
    assert first == assign_splits(records, 0.3, seed=1)
    split_of: dict[str, set[str]] = {}
    for r in first:
        split_of.setdefault(r.patient_id, set()).add(r.split)
    assert all(len(s) == 1 for s in split_of.values())
    val = [r for r in first if r.split == "val" and r.laterality == "R"]
    assert sorted(r.label for r in val) == ["benign"] * 3 + ["malignant"] * 3 + ["normal"] * 3
    assert first != assign_splits(records, 0.3, seed=2)


def test_report_counts_and_warns(tmp_path: Path) -> None:
    summary = summarise(assign_splits(_records(12), 0.25, seed=0))
    assert summary["counts"]["label"] == {"benign": 4, "malignant": 4, "normal": 16}
    assert summary["patients"] == 12
    assert any("imbalance" in w for w in summary["warnings"])
    assert any("split val" in w for w in summary["warnings"])


def test_report_command_writes_plot(tmp_path: Path) -> None:
    write_mias_layout(tmp_path / "src")
    run_import(ImportOptions(tmp_path / "src", tmp_path / "ds", "mias", "tiny"))
    assert main(["data", "report", str(tmp_path / "ds")]) == 0
    assert (tmp_path / "ds" / "report.png").stat().st_size > 1000
    shutil.rmtree(tmp_path / "ds")


def test_crop_to_breast_moves_lesion_coordinates(tmp_path: Path) -> None:
    """Film scans: black margins and a chest wall away from the edge are cropped away."""
    src = tmp_path / "src"
    src.mkdir()
    image = np.zeros((96, 96), np.uint8)
    image[10:80, 30:70] = 120  # the breast, away from every edge
    image[40:50, 50:60] = 220  # its lesion
    image[85:90, 85:90] = 255  # a film label: small, not the breast
    Image.fromarray(image).save(src / "mdb001.png")
    with (src / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["refnum", "background_tissue", "abnormality_class", "severity", "x", "y", "radius"]
        )
        writer.writerow(["mdb001", "F", "CIRC", "B", "55", str(96 - 45), "5"])
    run_import(ImportOptions(src, tmp_path / "ds", "mias", "crop", crop_to_breast=True))
    (record,) = read_manifest(tmp_path / "ds")
    stored = np.asarray(Image.open(tmp_path / "ds" / record.path))
    assert stored.shape == (70 + 16, 40 + 16)  # the breast plus an 8-pixel margin
    lesion = record.lesions[0]
    assert (lesion.column, lesion.row) == (55 - 22, 45 - 2)
    assert stored[int(lesion.row), int(lesion.column)] == 220
