"""Drawing shared by the summary SC image and the PDF report: the marked views, hung as read.

Screening views are hung "back to back" (ACR / IHE Mammography Image profile): the right
breast on the viewer's left, the left breast on the right, chest walls meeting in the middle,
CC above MLO. A view whose Patient Orientation (0020,0020) says it is stored the other way
round is mirrored, and its findings with it (PS3.3 C.7.6.1.1.1: the first value is the
direction of increasing column index, so a hung right breast has "P", a left one "A").

Views are shrunk before anything is drawn, so an exam costs a few megabytes, whatever the
detector size. Text uses DejaVu Sans as matplotlib ships it (pinned with matplotlib), which
covers Latin, Cyrillic and the Kazakh letters; tests check every locale string against it.
"""

from __future__ import annotations

import atexit
import functools
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import matplotlib
import numpy as np
from fontTools import subset
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from node.dicom.pixels import presentation_pixels
from node.domain import ExamResult, Finding, ImageResult, Laterality
from node.writers.cad_sr import densest
from node.writers.locales import Locale
from node.writers.matching import Lesion, exam_lesions, lesion_index

__all__ = [
    "BOLD_FONT_PATH",
    "FONT_PATH",
    "OUTLINE",
    "PDF_FONT_RANGES",
    "VIEW_SLOTS",
    "HungView",
    "ResultText",
    "check_scores",
    "draw_mosaic",
    "fitted_font",
    "font",
    "hang_views",
    "location_text",
    "pdf_font",
    "pdf_font_characters",
    "result_text",
]

log = logging.getLogger(__name__)

_FONT_DIR: Final = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT_PATH: Final = _FONT_DIR / "DejaVuSans.ttf"
BOLD_FONT_PATH: Final = _FONT_DIR / "DejaVuSans-Bold.ttf"

#: Scripts the PDF font keeps (code point ranges): Latin with its extensions, Greek, Cyrillic
#: with the Kazakh letters, punctuation, currency and letterlike symbols such as "№".
PDF_FONT_RANGES: Final = (
    (0x0020, 0x007E),
    (0x00A0, 0x024F),
    (0x0370, 0x03FF),
    (0x0400, 0x052F),
    (0x1E00, 0x1EFF),
    (0x2000, 0x206F),
    (0x20A0, 0x20CF),
    (0x2100, 0x214F),
)

#: Mosaic slots in reading order: top row CC, bottom row MLO; right breast on the left.
VIEW_SLOTS: Final = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))
_HUNG_ROW_DIRECTION: Final = {"R": "P", "L": "A"}  # towards the chest wall / the nipple

OUTLINE: Final = (255, 200, 0)  # amber: visible on grey and on the red of a recall
LABEL_BACKGROUND: Final = (0, 0, 0)
TEXT: Final = (255, 255, 255)
MISSING: Final = (40, 40, 40)


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(BOLD_FONT_PATH if bold else FONT_PATH), size)


@dataclass(frozen=True)
class HungView:
    """One view shrunk to its slot, mirrored when needed, with its findings mapped to it."""

    laterality: str
    view: str
    image: Image.Image  # mode "L", presentation values (brighter = denser)
    findings: tuple[Finding, ...]  # coordinates and radius in ``image`` pixels
    score: float
    numbers: tuple[int, ...] = ()  # each finding's lesion number (node/writers/matching.py)


def _mirrored(ds: Dataset, laterality: str) -> bool:
    orientation = ds.get("PatientOrientation")
    if not orientation or len(orientation) != 2 or not str(orientation[0]):
        return False  # unknown orientation: shown as stored
    wanted = _HUNG_ROW_DIRECTION[laterality]
    opposite = {"P": "A", "A": "P"}[wanted]
    return str(orientation[0])[0] == opposite


def _hang(
    ds: Dataset, image: ImageResult, size: tuple[int, int], numbers: tuple[int, ...]
) -> HungView:
    """Shrink one view into ``size`` (rows, columns), keeping its aspect ratio."""
    # [0, 1], brighter = denser (PS3.3 C.11); those inference read, when it kept them.
    pixels = image.pixels if image.pixels is not None else presentation_pixels(ds)
    rows, columns = pixels.shape
    scale = min(size[0] / rows, size[1] / columns)
    shape = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    grey = Image.fromarray(np.round(pixels * 255.0).astype(np.uint8), mode="L")
    del pixels
    small = grey.resize(shape, Image.Resampling.BOX)  # box filter: area average, fast
    laterality = image.source.ImageLaterality
    mirrored = _mirrored(ds, laterality)
    if mirrored:
        small = small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    findings = tuple(
        Finding(
            column=(columns - f.column if mirrored else f.column) * scale,
            row=f.row * scale,
            radius=f.radius * scale,
            score=f.score,
            kind=f.kind,
        )
        for f in image.prediction.findings
    )
    return HungView(
        laterality, image.source.ViewPosition, small, findings, image.prediction.score, numbers
    )


def hang_views(
    pairs: Sequence[tuple[Dataset, ImageResult]], tile: tuple[int, int]
) -> dict[tuple[str, str], HungView]:
    """The screening view of each slot, shrunk to ``tile`` (rows, columns).

    Where a slot has several images (a repeated view), the most suspicious one is hung;
    views outside the four screening slots count in the scores but are not hung. Findings
    are numbered by lesion, so one lesion has one number on CC, MLO and in the PDF table.
    """
    lesions = lesion_index(exam_lesions(pairs))
    chosen: dict[tuple[str, str], tuple[Dataset, ImageResult]] = {}
    for ds, image in pairs:
        slot = (image.source.ImageLaterality, image.source.ViewPosition)
        if slot not in VIEW_SLOTS:
            continue
        if slot not in chosen or image.prediction.score > chosen[slot][1].prediction.score:
            chosen[slot] = (ds, image)
    return {
        slot: _hang(
            ds,
            image,
            tile,
            tuple(
                lesions[(image.source.SOPInstanceUID, index)].number
                for index in range(len(image.prediction.findings))
            ),
        )
        for slot, (ds, image) in chosen.items()
    }


Box = tuple[float, float, float, float]


def _overlaps(box: Box, taken: list[Box]) -> bool:
    return any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken)


def _label(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    face: ImageFont.FreeTypeFont,
    anchor: str,
    taken: list[Box],
    inside: Box,
) -> bool:
    """Text on a black box, readable on any tissue; shifted sideways to stay in its tile,
    and not drawn where it would leave the tile's height or hide another label."""
    left, top, right, bottom = draw.textbbox(xy, text, font=face, anchor=anchor)
    shift = max(0.0, inside[0] - (left - 3.0)) - max(0.0, right + 3.0 - inside[2])
    box = (left - 3.0 + shift, top - 2.0, right + 3.0 + shift, bottom + 2.0)
    within = inside[0] <= box[0] and box[2] <= inside[2]  # False only if wider than the tile
    if not within or box[1] < inside[1] or box[3] > inside[3] or _overlaps(box, taken):
        return False
    taken.append(box)
    draw.rectangle(box, fill=LABEL_BACKGROUND)
    draw.text((xy[0] + shift, xy[1]), text, font=face, fill=TEXT, anchor=anchor)
    return True


def _draw_view(
    canvas: Image.Image,
    origin: tuple[int, int],
    tile: tuple[int, int],
    hung: HungView,
    locale: Locale,
    text_scale: float,
) -> None:
    """Paste one view into its tile, chest wall towards the middle, and mark its findings.

    Every finding is outlined; its "number: score" label goes above it, else below it, else
    (crowded findings) is left out rather than hiding another label; the table has them all.
    """
    rows, columns = tile
    width, height = hung.image.size
    # Right breast: chest wall at the tile's right edge; left breast: at its left edge.
    left = origin[0] + (columns - width if hung.laterality == "R" else 0)
    top = origin[1] + (rows - height) // 2
    canvas.paste(hung.image.convert("RGB"), (left, top))
    draw = ImageDraw.Draw(canvas)
    taken: list[Box] = []
    inside = (origin[0], origin[1], origin[0] + columns, origin[1] + rows)
    # The view label goes to the tile's outer top corner, away from the chest walls.
    title = font(max(12, round(text_scale * columns / 20)), bold=True)
    if hung.laterality == "R":
        corner, anchor = (origin[0] + 6, origin[1] + 6), "la"
    else:
        corner, anchor = (origin[0] + columns - 6, origin[1] + 6), "ra"
    view_label = f"{hung.laterality} {hung.view}  {locale.score(hung.score)}"
    _label(draw, corner, view_label, title, anchor, taken, inside)

    line = max(2, columns // 180)
    small = font(max(11, round(text_scale * columns / 26)), bold=True)
    numbers = hung.numbers or tuple(range(1, len(hung.findings) + 1))
    numbered = sorted(zip(numbers, hung.findings, strict=True), key=lambda item: -item[1].score)
    for _, finding in numbered:
        x, y, r = left + finding.column, top + finding.row, max(finding.radius, 6.0)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=OUTLINE, width=line)
    for number, finding in numbered:  # most suspicious first: they get the labels
        x, y, r = left + finding.column, top + finding.row, max(finding.radius, 6.0)
        text = f"{number}: {locale.score(finding.score)}"
        if not _label(draw, (x, y - r - line), text, small, "md", taken, inside):
            _label(draw, (x, y + r + line), text, small, "ma", taken, inside)


def draw_mosaic(
    views: dict[tuple[str, str], HungView],
    tile: tuple[int, int],
    locale: Locale,
    gap: int = 4,
    text_scale: float = 1.0,
) -> Image.Image:
    """The four slots as a 2 x 2 RGB mosaic; an empty slot says its view is not available.

    ``text_scale`` enlarges the labels where the mosaic is shown small (PDF thumbnails).
    """
    rows, columns = tile
    canvas = Image.new("RGB", (2 * columns + gap, 2 * rows + gap), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    face = font(max(12, round(text_scale * columns / 24)))
    for index, slot in enumerate(VIEW_SLOTS):
        origin = ((index % 2) * (columns + gap), (index // 2) * (rows + gap))
        hung = views.get(slot)
        if hung is None:
            draw.rectangle(
                (origin[0], origin[1], origin[0] + columns - 1, origin[1] + rows - 1), fill=MISSING
            )
            centre = (origin[0] + columns // 2, origin[1] + rows // 2)
            text = f"{slot[0]} {slot[1]}: {locale.text('view_missing')}"
            draw.text(centre, text, font=face, fill=TEXT, anchor="mm")
            continue
        _draw_view(canvas, origin, tile, hung, locale, text_scale)
    return canvas


def check_scores(exam: ExamResult) -> None:
    """Scores drawn as percentages must be probabilities (a NaN would print as 'nan%')."""
    for image in exam.images:
        for score in (image.prediction.score, *(f.score for f in image.prediction.findings)):
            if not 0.0 <= score <= 1.0:  # also False for NaN
                raise ValueError(f"scores must be probabilities in [0, 1], got {score}")


def fitted_font(text: str, width: int, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """The largest font up to ``size`` in which ``text`` fits ``width`` pixels (min 10 pt)."""
    face = font(size, bold)
    while size > 10 and face.getlength(text) > width:
        size -= 1
        face = font(size, bold)
    return face


@dataclass(frozen=True)
class ResultText:
    """The exam-level sentences both summaries print, in one language."""

    exam_score: str  # "Exam score 83.0%"
    suggestion: str  # "Recall suggested at the operating point 50.0%"
    breasts: tuple[tuple[str, str], ...]  # (label, value), right then left
    category: str  # "Suggested category (BI-RADS-style): 0 — incomplete: recall ..."
    category_derivation: str  # how the category follows from the score and operating point
    density: str  # "Breast density (ACR BI-RADS): c — heterogeneously dense"


def result_text(exam: ExamResult, locale: Locale) -> ResultText:
    check_scores(exam)
    breasts: list[tuple[str, str]] = []
    sides: tuple[tuple[Laterality, str], ...] = (("R", "right_breast"), ("L", "left_breast"))
    for laterality, key in sides:
        score = exam.breast_score(laterality)
        value = locale.text("not_imaged") if score is None else locale.score(score)
        breasts.append((locale.text(key), value))
    operating_point = locale.percent(exam.model.operating_point)
    sentence = "recall_sentence" if exam.recall else "no_recall_sentence"
    # A screening result has two categories to suggest: 0 (recall for assessment) at or above
    # the operating point, 1 (negative) below it; 2-6 need a reader's work-up.
    category = locale.text("category_0" if exam.recall else "category_1")
    density = exam.density or densest([i.prediction.density for i in exam.images])
    density_value = locale.text(f"density_{density}" if density else "density_unknown")
    return ResultText(
        exam_score=f"{locale.text('exam_score')}: {locale.score(exam.score)}",
        suggestion=locale.text(sentence, operating_point=operating_point),
        breasts=tuple(breasts),
        category=f"{locale.text('assessment')}: {category}",
        category_derivation=locale.text("assessment_derivation", operating_point=operating_point),
        density=f"{locale.text('density')}: {density_value}",
    )


def location_text(lesion: Lesion, locale: Locale) -> str:
    """Where the lesion is, in the reader's words (node/writers/location.py derives it)."""
    placement = lesion.placement
    parts = []
    if lesion.clock_hour is not None and lesion.quadrant is not None:
        parts.append(locale.text("clock_hour", hour=lesion.clock_hour))
        parts.append(locale.text("quadrant_" + lesion.quadrant.replace(" ", "_")))
    else:  # one view: one axis only
        if placement.superior is not None:
            parts.append(locale.text("half_upper" if placement.superior >= 0 else "half_lower"))
        if placement.lateral is not None:
            parts.append(locale.text("half_outer" if placement.lateral >= 0 else "half_inner"))
    parts.append(locale.text(f"depth_{placement.depth}"))
    if placement.distance_from_nipple_mm is not None:
        distance = f"{placement.distance_from_nipple_mm:.0f}"
        parts.append(locale.text("from_nipple", distance=distance))
    return ", ".join(parts)


@functools.cache
def _font_directory() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="mammo-node-fonts-"))  # private (0700)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@functools.cache
def pdf_font(bold: bool = False) -> Path:
    """DejaVu Sans reduced to :data:`PDF_FONT_RANGES`, without OpenType layout tables.

    Why: matplotlib subsets the font into every PDF it writes, and subsetting the whole
    DejaVu Sans (GSUB/GPOS of many scripts) costs most of a report's time; the reduced font
    is made once per process and makes that 2-3 times faster.
    """
    options = subset.Options(glyph_names=True, notdef_outline=True, recommended_glyphs=True)
    options.drop_tables += ["GSUB", "GPOS", "FFTM"]
    options.layout_features = []
    # DejaVu's own timestamp, not the time of saving: the same PDFs from every process
    ttf = TTFont(str(BOLD_FONT_PATH if bold else FONT_PATH), recalcTimestamp=False)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[c for lo, hi in PDF_FONT_RANGES for c in range(lo, hi + 1)])
    subsetter.subset(ttf)
    try:
        path = _font_directory() / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
        ttf.save(str(path))
    except OSError as exc:  # no writable temporary directory: slower, same text
        log.warning("cannot write the reduced PDF font (%s); using the full font", exc)
        return BOLD_FONT_PATH if bold else FONT_PATH
    return path


@functools.cache
def pdf_font_characters() -> frozenset[str]:
    """Characters both PDF fonts draw (others would print as empty boxes)."""
    maps = [TTFont(str(pdf_font(bold)), lazy=True).getBestCmap() for bold in (False, True)]
    return frozenset(chr(c) for c in maps[0] if c in maps[1])
