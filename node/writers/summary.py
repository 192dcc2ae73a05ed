"""Summary Secondary Capture image: the four marked views and the verdict, for any viewer.

Some viewers and PACS show images only (no SR, no SEG). This one RGB image carries what a
reader needs at a glance: the screening views hung back to back with each finding outlined
and scored, the exam and breast scores, the recall suggestion at the model's operating point,
the model's name and version, and "NOT FOR CLINICAL USE". Text is drawn in the configured
language (see :mod:`node.writers.locales`).

No patient identifier is burned into the pixels (the header carries them), so Burned In
Annotation is "NO" (PS3.3 C.7.6.1.1.5) and the image can be shown or shared de-identified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from node.domain import ExamResult
from node.writers.locales import DEFAULT_LANGUAGE, Locale, load_locale
from node.writers.provenance import (
    NODE_MANUFACTURER,
    NODE_SOFTWARE_VERSION,
    equipment_arguments,
    output_uid,
)
from node.writers.render import draw_mosaic, fitted_font, hang_views, result_text
from node.writers.seg import pair_sources

__all__ = [
    "SC_SERIES_DESCRIPTION",
    "SC_SERIES_NUMBER",
    "SUMMARY_TILE",
    "UTF8",
    "build_summary_image",
    "render_summary",
]

SC_SERIES_NUMBER: Final = 9110
SC_SERIES_DESCRIPTION: Final = "AI summary image (not for clinical use)"
#: Rows and columns of one view in the mosaic: half of a 1024 x 832 source.
SUMMARY_TILE: Final = (512, 416)
#: Specific Character Set for UTF-8 (PS3.3 C.12.1.1.2): names copied from any source and
#: Cyrillic text are encoded without loss.
UTF8: Final = "ISO_IR 192"

_HEADER: Final = 132
_FOOTER: Final = 64
_MARGIN: Final = 12
_RED: Final = (220, 30, 30)
_GREEN: Final = (60, 180, 75)
_WHITE: Final = (255, 255, 255)


def _summary_uid(exam: ExamResult, what: str, language: str) -> str:
    # The language is part of the identity: an English and a Russian summary are two
    # instances, so two destinations with two languages never get clashing contents.
    return output_uid(exam, f"summary SC {what} {language}")


def render_summary(sources: Sequence[Dataset], exam: ExamResult, locale: Locale) -> Image.Image:
    """The summary as an RGB image: header with the verdict, the mosaic, footer."""
    pairs = pair_sources(sources, exam)
    text = result_text(exam, locale)
    mosaic = draw_mosaic(hang_views(pairs, SUMMARY_TILE), SUMMARY_TILE, locale)
    width = mosaic.width
    canvas = Image.new("RGB", (width, _HEADER + mosaic.height + _FOOTER), (0, 0, 0))
    canvas.paste(mosaic, (0, _HEADER))
    draw = ImageDraw.Draw(canvas)
    inner = width - 2 * _MARGIN

    warning = locale.text("not_for_clinical_use")
    warning_font = fitted_font(warning, inner, 20, bold=True)
    draw.rectangle((0, 0, width, 30), fill=_RED)
    draw.text((width // 2, 15), warning, font=warning_font, fill=_WHITE, anchor="mm")
    title = locale.text("title")
    draw.text((_MARGIN, 36), title, font=fitted_font(title, inner, 22, bold=True), fill=_WHITE)
    verdict = f"{text.exam_score} — {text.suggestion}"
    draw.text(
        (_MARGIN, 66),
        verdict,
        font=fitted_font(verdict, inner, 19, bold=True),
        fill=_RED if exam.recall else _GREEN,
    )
    breasts = "    ".join(f"{label}: {value}" for label, value in text.breasts)
    draw.text((_MARGIN, 94), breasts, font=fitted_font(breasts, inner, 17), fill=_WHITE)
    assessment = f"{text.category} · {text.density}"
    draw.text((_MARGIN, 115), assessment, font=fitted_font(assessment, inner, 13), fill=_WHITE)

    top = _HEADER + mosaic.height
    model = exam.model
    line = (
        f"{locale.text('model')}: {model.name} {model.version} ({model.manufacturer}) · "
        f"{locale.text('generated_by', version=NODE_SOFTWARE_VERSION)}"
    )
    draw.text((_MARGIN, top + 8), line, font=fitted_font(line, inner, 15), fill=_WHITE)
    draw.text(
        (_MARGIN, top + 34), warning, font=fitted_font(warning, inner, 16, bold=True), fill=_RED
    )
    return canvas


def build_summary_image(
    sources: Sequence[Dataset], exam: ExamResult, language: str = DEFAULT_LANGUAGE
) -> hd.sc.SCImage:
    """Secondary Capture Image (PS3.3 A.8.1) of the summary, in ``language`` (en, ru, kk)."""
    locale = load_locale(language)  # raises ValueError naming the known languages
    pairs = pair_sources(sources, exam)
    pixels = np.asarray(render_summary(sources, exam, locale), dtype=np.uint8)
    reference = pairs[0][0]
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=_summary_uid(exam, "series", language),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=_summary_uid(exam, "instance", language),
        instance_number=1,
        **equipment_arguments(exam.model),
        # highdicom requires an orientation for PATIENT; replaced below by an empty value.
        patient_orientation=("P", "L"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        series_description=SC_SERIES_DESCRIPTION,
        specific_character_set=UTF8,
    )
    # PS3.3 C.7.6.1.1.1: a mosaic of differently oriented views has no single Patient
    # Orientation; the attribute is Type 2C, so it is present and empty.
    image.add_new("PatientOrientation", "CS", None)
    # The mosaic shows both breasts: Image Laterality B ("both left and right", PS3.3
    # C.7.6.1, General Image Module). Series Laterality (C.7.3.1) is required only when Image
    # Laterality is not sent, and has no value for both (R or L only), so it is left out.
    image.ImageLaterality = "B"
    # PS3.3 C.7.6.1 General Image: what the image was made from, and how.
    image.BurnedInAnnotation = "NO"
    image.DerivationDescription = (
        f"{exam.model.name} {exam.model.version} results drawn on the screening views "
        f"by {NODE_MANUFACTURER} ({language}); not for clinical use"
    )[:1024]
    image.SourceImageSequence = DicomSequence(_source_items(sources, exam))
    image.ImageComments = locale.text("title")
    return image


def _source_items(sources: Sequence[Dataset], exam: ExamResult) -> list[Dataset]:
    """Source Image Sequence items (PS3.3 C.7.6.1, Table 10-3) for every source image."""
    items = []
    for ds, _ in pair_sources(sources, exam):
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        items.append(item)
    return items
