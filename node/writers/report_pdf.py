"""One-page PDF report of an exam, encapsulated in DICOM for viewers that show documents only.

The page says what the TID 1500 SR says, for a human: patient and study identification as in
the source header, exam and breast scores, the recall suggestion at the operating point, a
findings table, the model's provenance, the marked views (:mod:`node.writers.render`) and
"NOT FOR CLINICAL USE", in the configured language. highdicom 0.28 has no Encapsulated PDF
class, so the IOD (PS3.3 A.45.1) is built here with pydicom, module by module.

The PDF is drawn with matplotlib's PDF backend with TrueType (Type 42) fonts, so its text is
real text (searchable, copyable, read by ``pdftotext``), and without a creation date, so the
same results always give the same bytes.
"""

from __future__ import annotations

import datetime
import io
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, EncapsulatedPDFStorage, ExplicitVRLittleEndian
from pydicom.valuerep import PersonName

from node.domain import ExamResult, ImageResult
from node.writers.locales import DEFAULT_LANGUAGE, Locale, load_locale
from node.writers.matching import exam_lesions
from node.writers.provenance import (
    NODE_DEVICE_SERIAL_NUMBER,
    NODE_MANUFACTURER,
    NODE_MODEL_NAME,
    NODE_SOFTWARE_VERSION,
    contributing_equipment,
    output_uid,
)
from node.writers.render import (
    draw_mosaic,
    hang_views,
    location_text,
    pdf_font,
    pdf_font_characters,
    result_text,
)
from node.writers.seg import pair_sources
from node.writers.summary import UTF8

__all__ = ["PDF_SERIES_DESCRIPTION", "PDF_SERIES_NUMBER", "build_report_pdf", "render_report"]

PDF_SERIES_NUMBER: Final = 9111
PDF_SERIES_DESCRIPTION: Final = "AI report PDF (not for clinical use)"
MAX_FINDING_ROWS: Final = 6  # the most suspicious lesions; the rest are counted

_PAGE: Final = (8.27, 11.69)  # A4 portrait, inches
_THUMBNAIL_TILE: Final = (384, 312)
_RED: Final = "#c81e1e"
_GREEN: Final = "#1e7a32"
# rcParams are process-wide and workers are threads: one PDF is drawn at a time.
_MATPLOTLIB_LOCK: Final = threading.Lock()

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


def _drawable(text: str) -> str:
    """``text`` with "?" for characters the font lacks (a name in a script it does not
    cover): a visible mark, never an empty box that reads as a letter."""
    known = pdf_font_characters()
    return "".join(c if c in known or c == "\n" else "?" for c in text)


@dataclass
class _Page:
    """A cursor over one figure, in inches from the top-left corner."""

    figure: Figure

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float = 9,
        bold: bool = False,
        color: str = "black",
        **kwargs: Any,
    ) -> None:
        self.figure.text(
            x / _PAGE[0],
            1 - y / _PAGE[1],
            _drawable(text),
            fontproperties=FontProperties(fname=pdf_font(bold)),
            fontsize=size,
            color=color,
            va="top",
            **kwargs,
        )

    def fields(self, x: float, y: float, rows: Sequence[tuple[str, str]], width: int) -> float:
        """Label: value lines, wrapped at ``width`` characters; returns the next free y."""
        for label, value in rows:
            line = f"{label}: {value}" if label else value
            lines = textwrap.wrap(line, width) or [""]
            self.text(x, y, "\n".join(lines), size=8.5, linespacing=1.3)
            y += 0.19 * len(lines)
        return y


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


def _draw_header(page: _Page, exam: ExamResult, source: Dataset, locale: Locale) -> None:
    """Warning band, title, identification (left) and the verdict (right)."""
    text = result_text(exam, locale)
    page.figure.patches.append(
        Rectangle(
            (0, 1 - 0.45 / _PAGE[1]),
            1,
            0.45 / _PAGE[1],
            transform=page.figure.transFigure,
            facecolor=_RED,
            edgecolor="none",
        )
    )
    warning = locale.text("not_for_clinical_use")
    page.text(_PAGE[0] / 2, 0.1, warning, size=13, bold=True, color="white", ha="center")
    page.text(0.6, 0.65, locale.text("title"), size=16, bold=True)
    page.fields(0.6, 1.15, _identification(source, locale), width=52)
    page.text(4.4, 1.15, text.exam_score, size=11, bold=True)
    suggestion = "\n".join(textwrap.wrap(text.suggestion, 34))
    color = _RED if exam.recall else _GREEN
    page.text(4.4, 1.45, suggestion, size=10.5, bold=True, color=color, linespacing=1.3)
    y = 1.75 + 0.22 * suggestion.count("\n")
    page.fields(4.4, y, [("", locale.text("breast_scores") + ":")], width=60)
    page.fields(4.6, y + 0.22, text.breasts, width=50)
    category = textwrap.wrap(text.category, 54)
    page.text(4.4, y + 0.66, "\n".join(category), size=8, bold=True)
    page.text(
        4.4, y + 0.72 + 0.14 * len(category), "\n".join(textwrap.wrap(text.density, 56)), size=8
    )


def _draw_findings(
    page: _Page, pairs: Sequence[tuple[Dataset, ImageResult]], exam: ExamResult, locale: Locale
) -> None:
    y = 3.5
    page.text(0.6, y, locale.text("findings"), size=11, bold=True)
    header, rows, left_out = _findings_table(pairs, locale)
    columns = (0.6, 0.9, 1.75, 3.35, 3.95, 7.0)
    y += 0.3
    for x, cell in zip(columns, header, strict=True):
        page.text(x, y, "\n".join(textwrap.wrap(cell, 18 if x >= 7.0 else 60)), size=8, bold=True)
    y += 0.1
    for cells in rows:
        y += 0.18
        location = textwrap.wrap(cells[4], 48)
        for x, cell in zip(columns, cells, strict=True):
            page.text(x, y, "\n".join(location) if x == columns[4] else cell, size=8)
        y += 0.15 * (len(location) - 1)
    if not rows:
        page.text(0.6, y + 0.19, locale.text("no_findings"), size=8.5)
        y += 0.19
    if left_out:
        page.text(0.6, y + 0.19, locale.text("more_findings", count=left_out), size=8.5)
        y += 0.19
    notes = [locale.text("location_note")] if rows else []
    notes.append(result_text(exam, locale).category_derivation)
    for note in notes:
        wrapped = textwrap.wrap(note, 120)
        page.text(0.6, y + 0.25, "\n".join(wrapped), size=7, color="#444444")
        y += 0.25 + 0.12 * (len(wrapped) - 1)


def _draw_views_and_model(
    page: _Page, pairs: Sequence[tuple[Dataset, ImageResult]], exam: ExamResult, locale: Locale
) -> None:
    """The marked views as thumbnails (left) and the model's provenance (right)."""
    views = hang_views(pairs, _THUMBNAIL_TILE)
    mosaic = draw_mosaic(views, _THUMBNAIL_TILE, locale, text_scale=1.5)
    top, height = 6.0, 4.4
    width = height * mosaic.width / mosaic.height
    page.text(0.6, top - 0.3, locale.text("marked_views"), size=11, bold=True)
    axes = page.figure.add_axes(
        (0.6 / _PAGE[0], 1 - (top + height) / _PAGE[1], width / _PAGE[0], height / _PAGE[1])
    )
    axes.imshow(np.asarray(mosaic), interpolation="none")
    axes.set_axis_off()

    model = exam.model
    x = 0.6 + width + 0.35
    page.text(x, top - 0.3, locale.text("model"), size=11, bold=True)
    page.fields(
        x,
        top,
        [
            (locale.text("model"), model.name),
            (locale.text("model_version"), model.version),
            (locale.text("model_manufacturer"), model.manufacturer),
            (locale.text("intended_use"), model.intended_use),
            (locale.text("training_data"), model.training_data),
            (locale.text("operating_point"), locale.percent(model.operating_point)),
            (locale.text("device_uid"), model.device_uid),
            (locale.text("study_uid"), exam.StudyInstanceUID),
            ("", locale.text("generated_by", version=NODE_SOFTWARE_VERSION)),
        ],
        width=int((_PAGE[0] - x - 0.4) * 13),
    )


def render_report(sources: Sequence[Dataset], exam: ExamResult, locale: Locale) -> bytes:
    """The one-page report as PDF bytes."""
    pairs = pair_sources(sources, exam)
    page = _Page(Figure(figsize=_PAGE))
    _draw_header(page, exam, pairs[0][0], locale)
    _draw_findings(page, pairs, exam, locale)
    _draw_views_and_model(page, pairs, exam, locale)
    page.text(0.6, 10.65, "\n".join(textwrap.wrap(locale.text("disclaimer"), 110)), size=8)
    warning = locale.text("not_for_clinical_use")
    page.text(_PAGE[0] / 2, 11.2, warning, size=12, bold=True, color=_RED, ha="center")

    buffer = io.BytesIO()
    with _MATPLOTLIB_LOCK, matplotlib.rc_context({"pdf.fonttype": 42, "pdf.compression": 6}):
        page.figure.savefig(
            buffer,
            format="pdf",
            metadata={
                "Title": locale.text("document_title"),
                "Creator": NODE_MANUFACTURER,
                "Producer": NODE_MANUFACTURER,
                "CreationDate": None,
            },
        )
    return buffer.getvalue()


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
