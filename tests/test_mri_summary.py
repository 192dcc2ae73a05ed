"""The MR summary (SC image and Encapsulated PDF): valid DICOM, curves plotted, text in en/ru/kk.

Checked with dciodvfy (the IODs), pdftotext from poppler-utils (the PDF holds the translated
text: locations, scores and the score's derivation) and the figure itself (each candidate's
kinetic curve is drawn, and its last point lies in the shaded zone of its curve type).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from pydicom.dataset import Dataset
from validators import dciodvfy_errors, dciodvfy_output

from node.mri import kinetic_outputs
from node.mri.assembly import DceExam, assemble_dce
from node.mri.kinetics import KineticResult, KineticSettings, analyse
from node.mri.phantom import make_dce_phantom
from node.mri.scoring import RULE_SCORER
from node.mri.summary import build_mri_summary, build_mri_summary_pdf
from node.mri.summary_page import catalogues, location_text, render_mri_summary
from node.mri.synthetic_dicom import dce_study
from node.writers.locales import LANGUAGES
from node.writers.render import pdf_font_characters

# dciodvfy 2022 lacks DeviceUID in Contributing Equipment (IHE AIR adds it) and warns on the
# empty Laterality of a page that shows both breasts.
ALLOWED_WARNINGS = ("DeviceUID", "</Laterality(0020,0060)> - is only permitted to be empty")


@pytest.fixture(scope="module")
def analysed() -> tuple[DceExam, KineticResult]:
    datasets, _ = dce_study(1)
    exam = assemble_dce(datasets)
    return exam, analyse(exam)


def _clean(ds: Dataset) -> None:
    lines = dciodvfy_output(ds)
    assert dciodvfy_errors(ds) == [], lines
    warnings = [line for line in lines if line.startswith("Warning")]
    assert [w for w in warnings if not any(a in w for a in ALLOWED_WARNINGS)] == []


def _pdf_text(ds: Dataset, tmp_path: Path) -> str:
    binary = shutil.which("pdftotext")
    if binary is None:
        pytest.skip("pdftotext not installed (Debian package poppler-utils)")
    pdf = tmp_path / "summary.pdf"
    pdf.write_bytes(bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)])
    text = subprocess.run(
        [binary, str(pdf), "-"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return " ".join(text.split())  # joins wrapped lines


@pytest.mark.parametrize("language", LANGUAGES)
def test_summary_sc_and_pdf_are_valid_and_translated(
    analysed: tuple[DceExam, KineticResult], language: str, tmp_path: Path
) -> None:
    exam, result = analysed
    image = build_mri_summary(exam, result, RULE_SCORER, language)
    document = build_mri_summary_pdf(exam, result, RULE_SCORER, language)
    _clean(image)
    _clean(document)
    mri, shared = catalogues(language)
    assert image.ImageComments == mri.text("title")
    assert document.DocumentTitle == mri.text("document_title")
    assert image.BurnedInAnnotation == document.BurnedInAnnotation == "NO"
    assert image.pixel_array.shape[2] == 3 and image.pixel_array.shape[0] > 1000
    assert image.StudyInstanceUID == document.StudyInstanceUID == exam.StudyInstanceUID
    text = _pdf_text(document, tmp_path)
    assert shared.text("not_for_clinical_use") in text
    for candidate in result.candidates:
        assert location_text(candidate, mri, shared) in text
        assert RULE_SCORER.explain(candidate.features, mri) in text
        assert mri.text("curve_" + candidate.curve) in text
    assert mri.text("rule_explained", threshold="70", persistent="10", washout="10")[:40] in text


def test_each_candidate_curve_is_plotted_in_the_zone_of_its_type(
    analysed: tuple[DceExam, KineticResult],
) -> None:
    exam, result = analysed
    figure = render_mri_summary(exam, result, RULE_SCORER, "en")
    plots = [a for a in figure.axes if a.get_lines() and a.get_xlabel()]
    assert len(plots) == len(result.candidates) == 3
    drawn = {tuple(np.round(np.asarray(a.get_lines()[0].get_ydata(), float), 2)) for a in plots}
    assert drawn == {c.enhancement_curve for c in result.candidates}
    zones = ("persistent", "plateau", "washout")  # drawn top to bottom
    for axes in plots:
        curve = np.asarray(axes.get_lines()[0].get_ydata(), dtype=float)
        candidate = next(c for c in result.candidates if np.allclose(c.enhancement_curve, curve))
        bands = [c for c in axes.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 3
        heights = [np.asarray(b.get_paths()[0].vertices, dtype=float)[:, 1] for b in bands]
        spans = [(float(h.min()), float(h.max())) for h in heights]
        inside = [name for name, (lo, hi) in zip(zones, spans, strict=True) if lo <= curve[-1] < hi]
        assert inside == [candidate.curve]


def test_no_candidate_is_said_in_words(tmp_path: Path) -> None:
    datasets, _ = dce_study(2, make_dce_phantom(seed=2, slices=10, rows=64, columns=96, lesions=()))
    exam = assemble_dce(datasets)
    result = analyse(exam, KineticSettings(enhancement_threshold_percent=500))
    assert result.candidates == []
    document = build_mri_summary_pdf(exam, result)
    _clean(document)
    mri, _ = catalogues("en")
    expected = mri.text("no_candidates", volume="30", threshold="500")
    assert " ".join(expected.split()) in _pdf_text(document, tmp_path)


def test_one_instance_per_language_and_unknown_languages_refused(
    analysed: tuple[DceExam, KineticResult],
) -> None:
    exam, result = analysed
    uids = {build_mri_summary(exam, result, RULE_SCORER, lang).SOPInstanceUID for lang in LANGUAGES}
    assert len(uids) == len(LANGUAGES)
    again = build_mri_summary(exam, result, RULE_SCORER, "en").SOPInstanceUID
    assert again in uids  # deterministic
    with pytest.raises(ValueError, match="known languages"):
        build_mri_summary(exam, result, RULE_SCORER, "de")


def test_every_mri_string_has_glyphs_in_the_pdf_font() -> None:
    known = pdf_font_characters()
    for language in LANGUAGES:
        mri, _ = catalogues(language)  # also checks the keys and fields against English
        characters = {c for value in mri.strings.values() for c in value if not c.isspace()}
        assert sorted(characters - known) == [], language


def test_kinetic_outputs_ends_with_the_summaries() -> None:
    datasets, _ = dce_study(2, make_dce_phantom(seed=2, slices=12, rows=64, columns=96))
    result, outputs = kinetic_outputs(datasets, languages=("en", "kk"))
    tail = outputs[-4:]
    secondary_capture, pdf = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.104.1"
    assert [ds.SOPClassUID for ds in tail] == [secondary_capture] * 2 + [pdf] * 2
    assert [ds.SpecificCharacterSet for ds in tail] == ["ISO_IR 192"] * 4
    _, without = kinetic_outputs(datasets, summary=False)
    assert len(without) == len(outputs) - 4 == 2 + int((result.curve > 0).any(axis=(1, 2)).sum())
