"""Summary SC image and encapsulated PDF report: valid DICOM, readable text in en/ru/kk.

Checked with dciodvfy (the IODs), pdftotext/pdfinfo from poppler-utils (the PDF really holds
the translated text) and fontTools (every string has glyphs in the font: no tofu).
"""

from __future__ import annotations

import copy
import functools
import io
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fontTools.ttLib import TTFont
from pydicom.dataset import Dataset
from test_writers import LESIONS, MODEL, SCORES
from validators import dciodvfy_errors, dciodvfy_output

from node.domain import ExamResult, Finding, ImagePrediction, ImageResult
from node.inference.scoring import prepare_images, source_image
from node.synthetic.dicom import synthetic_exam
from node.writers.locales import LANGUAGES, load_locale
from node.writers.outputs import build_outputs
from node.writers.provenance import NODE_MANUFACTURER
from node.writers.render import BOLD_FONT_PATH, FONT_PATH, OUTLINE, pdf_font
from node.writers.report_pdf import MAX_FINDING_ROWS, build_report_pdf
from node.writers.summary import SUMMARY_TILE, UTF8, build_summary_image

ROWS, COLUMNS = 256, 208  # half a tile: every view is scaled by exactly 2
HEADER, FOOTER, GAP = 132, 64, 4
# dciodvfy 2022 lacks DeviceUID in Contributing Equipment (AIR asks for it), and warns that
# an empty Laterality should be absent or valued: the mosaic shows both breasts.
ALLOWED_WARNINGS = ("DeviceUID", "</Laterality(0020,0060)> - is only permitted to be empty")
KAZAKH_LETTERS = "әғқңөұүһіӘҒҚҢӨҰҮҺІ"


def _image(ds: Dataset, truth: tuple[Finding, ...]) -> ImageResult:
    key = f"{ds.ImageLaterality} {ds.ViewPosition}"
    prediction = ImagePrediction(
        score=SCORES.get(key, 0.05),
        heatmap=np.zeros((ds.Rows, ds.Columns), np.float32),
        findings=[replace(f, score=SCORES[key]) for f in truth],
    )
    return ImageResult(source_image(ds), prediction)


@functools.cache
def _exam() -> tuple[list[Dataset], ExamResult]:
    exam = synthetic_exam(3, rows=ROWS, columns=COLUMNS, lesions_per_image=LESIONS)
    sources = [ds for ds, _ in exam]
    images = [_image(ds, truth) for ds, truth in exam]
    return sources, ExamResult(sources[0].StudyInstanceUID, MODEL, images)


@functools.cache
def _sc(language: str) -> Dataset:
    return build_summary_image(*_exam(), language=language)


@functools.cache
def _pdf(language: str) -> Dataset:
    return build_report_pdf(*_exam(), language=language)


def _document(ds: Dataset) -> bytes:
    return bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]


def _poppler(binary: str, document: bytes, tmp_path: Path) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (Debian package poppler-utils)")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(document)
    done = subprocess.run(
        [path, str(pdf), *(["-"] if binary == "pdftotext" else [])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _round_trip(ds: Dataset) -> Dataset:
    """Write as Part 10 and read back: what a PACS would store."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _unexpected_warnings(ds: Dataset) -> list[str]:
    return [
        line
        for line in dciodvfy_output(ds)[1:]
        if line.startswith("Warning") and not any(w in line for w in ALLOWED_WARNINGS)
    ]


@pytest.mark.parametrize("language", LANGUAGES)
def test_summary_objects_pass_dciodvfy(language: str) -> None:
    for ds in (_sc(language), _pdf(language)):
        assert dciodvfy_errors(ds) == [], dciodvfy_output(ds)
        assert _unexpected_warnings(ds) == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_pdf_is_one_page_with_the_translated_text(language: str, tmp_path: Path) -> None:
    document = _document(_pdf(language))
    assert document.startswith(b"%PDF-") and document.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page\b", document)) == 1
    assert re.search(r"Pages:\s+1\n", _poppler("pdfinfo", document, tmp_path))
    text = " ".join(_poppler("pdftotext", document, tmp_path).split())  # joins wrapped lines
    locale = load_locale(language)
    expected = [
        locale.text("title"),
        locale.text("not_for_clinical_use"),
        f"{locale.text('exam_score')}: {locale.percent(0.83)}",
        locale.text("recall_sentence", operating_point=locale.percent(0.5)),
        f"{locale.text('left_breast')}: {locale.percent(0.61)}",
        locale.text("findings"),
        locale.text("kind_density"),  # a mass-like finding on one view (matching.py)
        locale.text("disclaimer").split(".")[0],
        "SYNTH000003",  # Patient ID, as in the source header
        "ACC000003",
        "Toy Mammo",
        MODEL.device_uid[:20],
    ]
    missing = [s for s in expected if " ".join(s.split()) not in text]
    assert missing == [], text


def test_pdf_dataset_carries_the_document_title_in_utf8() -> None:
    ds = _round_trip(_pdf("kk"))
    assert ds.SpecificCharacterSet == UTF8
    assert ds.DocumentTitle == load_locale("kk").text("document_title")
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert len(ds.EncapsulatedDocument) % 2 == 0
    assert _document(ds) == _document(_pdf("kk"))


def test_cyrillic_patient_name_from_another_character_set_survives(tmp_path: Path) -> None:
    sources, exam = _exam()
    first = copy.deepcopy(sources[0])
    first.SpecificCharacterSet = "ISO_IR 144"  # ISO 8859-5 Cyrillic, as some units send
    first.PatientName = "Иванова^Анна"
    first = _round_trip(first)
    ds = _round_trip(build_report_pdf([first, *sources[1:]], exam, language="ru"))
    assert str(ds.PatientName) == "Иванова^Анна"
    assert "Иванова, Анна" in _poppler("pdftotext", _document(ds), tmp_path)
    sc = _round_trip(build_summary_image([first, *sources[1:]], exam, language="ru"))
    assert (sc.SpecificCharacterSet, str(sc.PatientName)) == (UTF8, "Иванова^Анна")


def _amber(pixels: np.ndarray) -> np.ndarray:
    return np.all(pixels == np.array(OUTLINE, np.uint8), axis=-1)


def test_summary_image_size_and_marks_where_the_findings_are() -> None:
    sc = _sc("en")
    rows, columns = SUMMARY_TILE
    assert (sc.Rows, sc.Columns, sc.SamplesPerPixel) == (
        HEADER + 2 * rows + GAP + FOOTER,
        2 * columns + GAP,
        3,
    )
    pixels = sc.pixel_array
    amber = _amber(pixels)
    top, bottom = slice(HEADER, HEADER + rows), slice(HEADER + rows + GAP, HEADER + 2 * rows + GAP)
    left, right = slice(0, columns), slice(columns + GAP, 2 * columns + GAP)
    # Right breast on the viewer's left: R CC top-left, L MLO bottom-right; none elsewhere.
    assert amber[top, right].sum() == 0 and amber[bottom, left].sum() == 0
    _, exam = _exam()
    for image, (row_slice, column_slice) in (
        (exam.images[0], (top, left)),
        (exam.images[3], (bottom, right)),
    ):
        finding = image.prediction.findings[0]
        scale = rows / ROWS
        centre_row = row_slice.start + finding.row * scale
        centre_column = column_slice.start + finding.column * scale
        marked_rows, marked_columns = np.nonzero(amber)
        distance = np.hypot(marked_rows - centre_row, marked_columns - centre_column)
        ring = np.abs(distance - max(finding.radius * scale, 6)) < 4
        assert ring.sum() > 20, f"no outline around {image.source.ViewPosition} finding"
    tissue = pixels[top, left].astype(float).mean(axis=-1)
    assert tissue.std() > 10  # the mammogram is drawn, not a blank tile


def test_a_view_stored_mirrored_is_hung_the_same_way() -> None:
    sources, exam = _exam()
    flipped = copy.deepcopy(sources[0])  # R CC, stored with the chest wall on the left this time
    flipped.PatientOrientation = ["A", "L"]
    flipped.PixelData = np.ascontiguousarray(sources[0].pixel_array[:, ::-1]).tobytes()
    image = exam.images[0]
    mirrored_findings = [replace(f, column=COLUMNS - f.column) for f in image.prediction.findings]
    prediction = replace(image.prediction, findings=mirrored_findings)
    mirrored = replace(exam, images=[replace(image, prediction=prediction), *exam.images[1:]])
    again = build_summary_image([flipped, *sources[1:]], mirrored).pixel_array.astype(int)
    assert np.abs(again - _sc("en").pixel_array.astype(int)).mean() < 0.5


def test_missing_views_and_many_findings_are_said(tmp_path: Path) -> None:
    sources, exam = _exam()
    left_only = [i for i in exam.images if i.source.ImageLaterality == "L"]
    # Calcifications: none of them is the L MLO mass seen again (node/writers/matching.py),
    # so each is a row of its own.
    many = [
        Finding(20.0 + 8 * n, 40.0, 3.0, 0.5 + n / 100, kind="calcification")
        for n in range(MAX_FINDING_ROWS + 3)
    ]
    crowded = replace(left_only[0], prediction=replace(left_only[0].prediction, findings=many))
    partial = replace(exam, images=[crowded, left_only[1]])
    sc = build_summary_image(sources, partial).pixel_array
    rows, columns = SUMMARY_TILE
    missing = sc[HEADER : HEADER + rows, :columns]  # the R CC slot
    assert (missing == 40).all(axis=-1).mean() > 0.9  # grey "view not available" tile
    text = _poppler("pdftotext", _document(build_report_pdf(sources, partial, "ru")), tmp_path)
    text = " ".join(text.split())
    locale = load_locale("ru")
    assert f"{locale.text('right_breast')}: {locale.text('not_imaged')}" in text
    left_out = len(many) + len(left_only[1].prediction.findings) - MAX_FINDING_ROWS
    assert locale.text("more_findings", count=left_out) in text
    assert locale.text("recall_sentence", operating_point=locale.percent(0.5)) in text


def test_same_inputs_give_the_same_uids_and_bytes() -> None:
    sources, exam = _exam()
    for build, cached in ((build_summary_image, _sc), (build_report_pdf, _pdf)):
        again = build(sources, exam)
        assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (
            cached("en").SOPInstanceUID,
            cached("en").SeriesInstanceUID,
        )
        assert again.SOPInstanceUID != cached("ru").SOPInstanceUID  # one instance per language
        other = build(sources, replace(exam, model=replace(MODEL, version="1.3.0")))
        assert other.SOPInstanceUID != again.SOPInstanceUID
    assert _document(build_report_pdf(sources, exam)) == _document(_pdf("en"))
    uids = {_sc(lang).SOPInstanceUID for lang in LANGUAGES} | {
        _pdf(lang).SOPInstanceUID for lang in LANGUAGES
    }
    assert len(uids) == 2 * len(LANGUAGES)


def test_pixels_kept_by_inference_draw_the_same_summary() -> None:
    """The summary drawn from the presentation pixels inference kept is the one drawn from the
    sources themselves (the writers no longer compute them again when they have them)."""
    sources, exam = _exam()
    images, _ = prepare_images(sources)
    kept = replace(
        exam,
        images=[
            replace(result, pixels=image.pixels)
            for result, image in zip(exam.images, images, strict=True)
        ],
    )
    assert all(result.pixels is not None for result in kept.images)
    assert build_summary_image(sources, kept).PixelData == _sc("en").PixelData


def test_provenance_and_identification_copied() -> None:
    sources, _ = _exam()
    for ds in (_sc("ru"), _pdf("ru")):
        assert ds.Manufacturer == NODE_MANUFACTURER
        assert "not for clinical use" in ds.SeriesDescription
        for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber"):
            assert ds[keyword].value == sources[0][keyword].value
        devices = [i.DeviceUID for i in ds.ContributingEquipmentSequence if "DeviceUID" in i]
        assert devices == [MODEL.device_uid]
    referenced = [i.ReferencedSOPInstanceUID for i in _pdf("en").SourceInstanceSequence]
    assert referenced == [ds.SOPInstanceUID for ds in sources]
    assert [i.ReferencedSOPInstanceUID for i in _sc("en").SourceImageSequence] == referenced


def test_output_kinds_are_registered() -> None:
    outputs = build_outputs(*_exam(), kinds=("summary_sc", "summary_pdf"))
    assert [(o.kind, o.dataset.Modality) for o in outputs] == [
        ("summary_sc", "OT"),
        ("summary_pdf", "DOC"),
    ]


def test_unknown_language_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'de'.*en, ru, kk"):
        build_summary_image(*_exam(), language="de")
    with pytest.raises(ValueError, match="known languages: en, ru, kk"):
        build_report_pdf(*_exam(), language="fr")


def test_scores_that_are_not_probabilities_raise() -> None:
    sources, exam = _exam()
    bad = replace(exam.images[0].prediction, score=float("nan"))
    broken = replace(exam, images=[replace(exam.images[0], prediction=bad), *exam.images[1:]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        build_summary_image(sources, broken)


@pytest.mark.parametrize(
    "path",
    [FONT_PATH, BOLD_FONT_PATH, pdf_font(False), pdf_font(True)],
    ids=["regular", "bold", "pdf-regular", "pdf-bold"],
)
def test_every_locale_string_has_glyphs_in_the_font(path: Path) -> None:
    ttf = TTFont(str(path))
    cmap = ttf.getBestCmap()
    for language in LANGUAGES:
        strings = load_locale(language).strings
        characters = {c for value in strings.values() for c in value if not c.isspace()}
        assert sorted(c for c in characters if ord(c) not in cmap) == [], language
    assert [c for c in KAZAKH_LETTERS if ord(c) not in cmap] == []
    # Each Kazakh letter is drawn by an outline of its own (not an empty or shared box).
    glyphs = ttf["glyf"]
    names = [cmap[ord(c)] for c in KAZAKH_LETTERS]
    assert len(set(names)) == len(KAZAKH_LETTERS)
    assert all(glyphs[name].numberOfContours != 0 for name in names)


def test_a_name_in_a_script_the_pdf_font_lacks_prints_as_question_marks(tmp_path: Path) -> None:
    sources, exam = _exam()
    first = copy.deepcopy(sources[0])
    first.SpecificCharacterSet = UTF8
    first.PatientName = "王^小明"
    ds = build_report_pdf([first, *sources[1:]], exam)
    assert str(ds.PatientName) == "王^小明"  # the header keeps it
    assert "?, ??" in _poppler("pdftotext", _document(ds), tmp_path)


def test_every_language_has_the_keys_of_english() -> None:
    english = set(load_locale("en").strings)
    for language in LANGUAGES:
        assert set(load_locale(language).strings) == english
    assert load_locale("ru").percent(0.615) == "61,5%"
    assert load_locale("en").percent(0.615) == "61.5%"


def test_no_recall_below_the_operating_point(tmp_path: Path) -> None:
    sources, exam = _exam()
    low = [replace(i, prediction=replace(i.prediction, score=0.2)) for i in exam.images]
    calm = replace(exam, images=low)
    verdict = build_summary_image(sources, calm).pixel_array[60:96]  # the verdict line
    green, red = (60, 180, 75), (220, 30, 30)
    assert np.all(verdict == green, axis=-1).sum() > 50
    assert not np.all(verdict == red, axis=-1).any()
    text = " ".join(
        _poppler("pdftotext", _document(build_report_pdf(sources, calm, "kk")), tmp_path).split()
    )
    locale = load_locale("kk")
    assert locale.text("no_recall_sentence", operating_point=locale.percent(0.5)) in text
