"""One-page PDF report of an exam, encapsulated in DICOM for viewers that show documents only.

The page says what the TID 1500 SR says, for a human: patient and study identification as in
the source header, exam and breast scores, the recall suggestion at the operating point, a
findings table, the model's provenance, the marked views (:mod:`node.writers.render`) and
"NOT FOR CLINICAL USE", in the configured language. highdicom 0.28 has no Encapsulated PDF
class, so the IOD (PS3.3 A.45.1) is built here with pydicom, module by module.

The page is drawn with reportlab (:mod:`node.writers.pdf_page`): real, embedded TrueType
text that ``pdftotext`` reads, each block placed below the one before, and no dates, so the
same results always give the same bytes. matplotlib's PDF backend, used before, laid out and
subset every glyph itself, which cost most of the writing stage of a small exam.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Final

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, EncapsulatedPDFStorage, ExplicitVRLittleEndian
from pydicom.valuerep import PersonName
from reportlab.lib.colors import HexColor, white

from node.domain import ExamResult, ImageResult
from node.writers.locales import DEFAULT_LANGUAGE, Locale, load_locale
from node.writers.matching import exam_lesions
from node.writers.pdf_page import RIGHT, WIDTH, Page
from node.writers.provenance import (
    NODE_DEVICE_SERIAL_NUMBER,
    NODE_MANUFACTURER,
    NODE_MODEL_NAME,
    NODE_SOFTWARE_VERSION,
    contributing_equipment,
    output_uid,
)
from node.writers.render import draw_mosaic, hang_views, location_text, result_text
from node.writers.seg import pair_sources
from node.writers.summary import UTF8

__all__ = ["PDF_SERIES_DESCRIPTION", "PDF_SERIES_NUMBER", "build_report_pdf", "render_report"]

PDF_SERIES_NUMBER: Final = 9111
PDF_SERIES_DESCRIPTION: Final = "AI report PDF (not for clinical use)"
MAX_FINDING_ROWS: Final = 6  # the most suspicious lesions; the rest are counted

_FOOTER: Final = 10.65  # inches from the top: the disclaimer; all above ends 0.15 in higher
_THUMBNAIL_TILE: Final = (384, 312)
_COLUMNS: Final = (0.6, 0.9, 1.75, 3.35, 3.95, 6.95)  # the findings table
_RED: Final = HexColor("#c81e1e")
_GREEN: Final = HexColor("#1e7a32")
_GREY: Final = HexColor("#444444")

# Patient (PS3.3 C.7.1.1) and General Study (C.7.2.1) attributes copied from the source;
# True: Type 2, written empty when the source lacks it.
_COPIED: Final = {
    "PatientName": True,
    "PatientID": True,
    "IssuerOfPatientID": False,
    "PatientBirthDate": True,
    "PatientSex": True,
    "StudyInstanceUID": True,
    "StudyDate": True,
    "StudyTime": True,
    "ReferringPhysicianName": True,
    "StudyID": True,
    "AccessionNumber": True,
    "StudyDescription": False,
}


def copy_patient_and_study(source: Dataset, ds: Dataset) -> None:
    """Patient (C.7.1.1) and General Study (C.7.2.1) attributes, as in the source header;
    names re-encoded for ``ds``'s UTF-8, whatever character set the source used."""
    for keyword, type_2 in _COPIED.items():
        value = source.get(keyword)
        if keyword.endswith("Name") and value is not None:
            value = PersonName(str(value))
        if value is not None or type_2:
            setattr(ds, keyword, value if value is not None else "")


def _date(value: object) -> str:
    text = str(value or "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _name(value: object) -> str:
    name = PersonName(str(value or ""))
    parts = [name.family_name, " ".join(p for p in (name.given_name, name.middle_name) if p)]
    return ", ".join(p for p in parts if p)


def _identification(source: Dataset, locale: Locale) -> list[tuple[str, str]]:
    rows = [
        (locale.text("patient"), _name(source.get("PatientName"))),
        (locale.text("patient_id"), str(source.get("PatientID", ""))),
        (locale.text("birth_date"), _date(source.get("PatientBirthDate"))),
        (locale.text("sex"), str(source.get("PatientSex", ""))),
        (locale.text("study"), str(source.get("StudyDescription", ""))),
        (locale.text("study_date"), _date(source.get("StudyDate"))),
        (locale.text("accession_number"), str(source.get("AccessionNumber", ""))),
    ]
    return [(label, value) for label, value in rows if value]


def _spacing_mm(ds: Dataset) -> float | None:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    return float(spacing[0]) if spacing else None


def _findings_table(
    pairs: Sequence[tuple[Dataset, ImageResult]], locale: Locale
) -> tuple[list[str], list[list[str]], int]:
    """Header, one row per lesion (most suspicious first), and how many were left out.

    A lesion matched on CC and MLO is one row, named and numbered as on the marked views
    and in the SRs (node/writers/matching.py), placed by clock face, quadrant, depth and
    distance from the nipple rather than by pixel position.
    """
    in_mm = all(_spacing_mm(ds) is not None for ds, _ in pairs)
    rows: list[list[str]] = []
    for lesion in exam_lesions(pairs):
        largest = max(lesion.marks, key=lambda m: m.finding.radius)
        spacing = _spacing_mm(largest.source) or 1.0
        diameter = 2 * largest.finding.radius * (spacing if in_mm else 1.0)
        rows.append(
            [
                str(lesion.number),
                lesion.views,
                locale.text(lesion.label_key),
                locale.score(lesion.score),
                location_text(lesion, locale),
                locale.number(diameter),
            ]
        )
    header = [
        locale.text(key)
        for key in (
            "column_number",
            "column_view",
            "column_kind",
            "column_score",
            "column_location",
            "column_diameter_mm" if in_mm else "column_diameter_px",
        )
    ]
    shown = rows[:MAX_FINDING_ROWS]
    return header, shown, len(rows) - len(shown)


def _draw_header(page: Page, exam: ExamResult, source: Dataset, locale: Locale) -> float:
    """Warning band, title, identification (left) and the verdict (right); returns the y
    below the taller column."""
    text = result_text(exam, locale)
    page.band(0.45, _RED)
    warning = locale.text("not_for_clinical_use")
    page.text(WIDTH / 2, 0.13, warning, size=13, bold=True, color=white, centred=True)
    page.text(0.6, 0.65, locale.text("title"), size=16, bold=True)
    left = page.fields(0.6, 1.15, _identification(source, locale), width=3.6)

    x = 4.4
    y = page.text(x, 1.15, text.exam_score, size=11, bold=True) + 0.1
    color = _RED if exam.recall else _GREEN
    y = page.text(x, y, text.suggestion, size=10.5, bold=True, color=color) + 0.1
    y = page.fields(x, y, [("", locale.text("breast_scores") + ":")], width=RIGHT - x)
    y = page.fields(x + 0.2, y, text.breasts, width=RIGHT - x - 0.2) + 0.04
    y = page.text(x, y, text.category, size=8, bold=True) + 0.04
    y = page.text(x, y, text.density, size=8)
    return max(left, y)


def _draw_findings(
    page: Page,
    pairs: Sequence[tuple[Dataset, ImageResult]],
    exam: ExamResult,
    locale: Locale,
    y: float,
) -> float:
    """The findings table and its notes, from ``y`` down; returns the y below them."""
    y = page.text(0.6, y, locale.text("findings"), size=11, bold=True) + 0.1
    header, rows, left_out = _findings_table(pairs, locale)
    y = page.row(_COLUMNS, header, y, bold=True) + 0.13
    for cells in rows:
        y = page.row(_COLUMNS, cells, y, bold=False) + 0.04
    if not rows:
        y = page.text(0.6, y, locale.text("no_findings"), size=8.5) + 0.04
    if left_out:
        y = page.text(0.6, y, locale.text("more_findings", count=left_out), size=8.5) + 0.04
    notes = [locale.text("location_note")] if rows else []
    notes.append(result_text(exam, locale).category_derivation)
    for note in notes:
        y = page.text(0.6, y + 0.08, note, size=7, color=_GREY)
    return y


def _draw_views_and_model(
    page: Page,
    pairs: Sequence[tuple[Dataset, ImageResult]],
    exam: ExamResult,
    locale: Locale,
    y: float,
) -> None:
    """The marked views as thumbnails (left) and the model's provenance (right), from ``y``
    down to the disclaimer: the thumbnails shrink (0.2 in a step) until the text fits."""
    views = hang_views(pairs, _THUMBNAIL_TILE)
    mosaic = draw_mosaic(views, _THUMBNAIL_TILE, locale, text_scale=1.5)
    model = exam.model
    rows = [
        (locale.text("model"), model.name),
        (locale.text("model_version"), model.version),
        (locale.text("model_manufacturer"), model.manufacturer),
        (locale.text("intended_use"), model.intended_use),
        (locale.text("training_data"), model.training_data),
        (locale.text("operating_point"), locale.percent(model.operating_point)),
        (locale.text("device_uid"), model.device_uid),
        (locale.text("study_uid"), exam.StudyInstanceUID),
        ("", locale.text("generated_by", version=NODE_SOFTWARE_VERSION)),
    ]
    title = max(5.7, y + 0.2)
    top = title + 0.3
    height = min(4.4, _FOOTER - 0.15 - top)
    for _ in range(12):
        x = 0.6 + height * mosaic.width / mosaic.height + 0.35
        if page.fields(x, top, rows, RIGHT - x, draw=False) <= _FOOTER - 0.15 or height < 2.5:
            break
        height -= 0.2
    page.text(0.6, title, locale.text("marked_views"), size=11, bold=True)
    x = 0.6 + page.image(mosaic, 0.6, top, height) + 0.35
    page.text(x, title, locale.text("model"), size=11, bold=True)
    page.fields(x, top, rows, RIGHT - x)


def render_report(sources: Sequence[Dataset], exam: ExamResult, locale: Locale) -> bytes:
    """The one-page report as PDF bytes."""
    pairs = pair_sources(sources, exam)
    page = Page(locale.text("document_title"), NODE_MANUFACTURER)
    try:
        y = _draw_header(page, exam, pairs[0][0], locale)
        y = _draw_findings(page, pairs, exam, locale, max(3.5, y + 0.3))
        _draw_views_and_model(page, pairs, exam, locale, y)
        page.text(0.6, _FOOTER, locale.text("disclaimer"), size=8)
        warning = locale.text("not_for_clinical_use")
        page.text(WIDTH / 2, 11.2, warning, size=12, bold=True, color=_RED, centred=True)
        return page.finish()
    finally:
        page.release()


def build_report_pdf(
    sources: Sequence[Dataset], exam: ExamResult, language: str = DEFAULT_LANGUAGE
) -> Dataset:
    """Encapsulated PDF (PS3.3 A.45.1) of the exam's report, in ``language`` (en, ru, kk)."""
    locale = load_locale(language)  # raises ValueError naming the known languages
    pairs = pair_sources(sources, exam)
    document = render_report(sources, exam, locale)
    source = pairs[0][0]
    now = datetime.datetime.now()
    sop_instance_uid = output_uid(exam, f"summary PDF instance {language}")

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    # SOP Common (C.12.1); UTF-8 for the translated title and any name copied from the source
    ds.SpecificCharacterSet = UTF8
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.ContributingEquipmentSequence = DicomSequence([contributing_equipment(exam.model)])
    copy_patient_and_study(source, ds)
    # Encapsulated Document Series (C.24.1)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = output_uid(exam, f"summary PDF series {language}")
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = PDF_SERIES_DESCRIPTION
    # General Equipment (C.7.5.1): the node, by which it recognises its own outputs
    ds.Manufacturer = NODE_MANUFACTURER
    ds.ManufacturerModelName = NODE_MODEL_NAME
    ds.DeviceSerialNumber = NODE_DEVICE_SERIAL_NUMBER
    ds.SoftwareVersions = NODE_SOFTWARE_VERSION
    # SC Equipment (C.8.6.1): a document made by software on a workstation
    ds.ConversionType = "WSD"
    # Encapsulated Document (C.24.2)
    ds.InstanceNumber = 1
    ds.ContentDate = ds.InstanceCreationDate
    ds.ContentTime = ds.InstanceCreationTime
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"  # the page names the patient (C.24.2: identifying text)
    ds.SourceInstanceSequence = DicomSequence([_reference(s) for s, _ in pairs])
    ds.DocumentTitle = locale.text("document_title")
    ds.ConceptNameCodeSequence = DicomSequence()
    ds.VerificationFlag = "UNVERIFIED"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    # C.24.2.1: odd-length documents get one trailing NULL; the length excludes it.
    ds.EncapsulatedDocumentLength = len(document)
    ds.EncapsulatedDocument = document + b"\x00" * (len(document) % 2)
    return ds


def _reference(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return item
