"""The MR summary page, drawn once with matplotlib for both the SC image and the PDF.

A reader whose viewer shows images or documents only (no SR, no SEG) still gets the kinetic
result at a glance, for each candidate (most suspicious first): its kinetic curve (mean
percent enhancement of its voxels over time) with the persistent / plateau / washout zones
shaded from its early peak (the thresholds of :class:`node.mri.kinetics.KineticSettings`),
its location (breast, clock face, quadrant, depth, distance from the nipple), volume,
enhancement, enhancement ratio and score with the score's derivation, and a thumbnail of the
curve-type colour map through it; then how the score is made, the CAD's and scorer's names,
and "NOT FOR CLINICAL USE". Text is in the configured language (en, ru, kk), with the
catalogue mechanism of the mammography summary. No patient identifier is drawn.
"""

from __future__ import annotations

import textwrap
from typing import Any, Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle

from node.mri.assembly import DceExam
from node.mri.kinetics import KineticResult, LesionCandidate, early_phases
from node.mri.scoring import KINETIC_CAD, KineticScorer, RuleScorer
from node.mri.writers import CURVE_COLOURS, curve_overlay
from node.writers.locales import Locale, load_catalogue, load_locale
from node.writers.provenance import NODE_SOFTWARE_VERSION
from node.writers.render import pdf_font

__all__ = ["MAX_CANDIDATES", "PAGE_INCHES", "catalogues", "location_text", "render_mri_summary"]

MAX_CANDIDATES: Final = 4  # rows on the page; the rest are counted
PAGE_INCHES: Final = (8.27, 11.69)  # A4 portrait
_PAGE: Final = PAGE_INCHES
_ROW: Final = 1.95  # inches per candidate
_TOP: Final = 1.55
_THUMB_MM: Final = 40.0  # half-width of the colour-map thumbnail around the candidate
_RED: Final = "#c81e1e"
_SIDE_KEYS: Final = {"R": "right_breast", "L": "left_breast"}


def catalogues(language: str) -> tuple[Locale, Locale]:
    """(MRI strings, shared report strings) of ``language``; ValueError names the known."""
    return load_catalogue("node.mri.locales", language), load_locale(language)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


class _Page:
    """Text on one figure, in inches from the top-left corner."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure

    def text(
        self, x: float, y: float, text: str, size: float = 8.5, bold: bool = False, **kwargs: Any
    ) -> None:
        self.figure.text(
            x / _PAGE[0],
            1 - y / _PAGE[1],
            text,
            fontproperties=FontProperties(fname=pdf_font(bold), size=size),
            va="top",
            **kwargs,
        )

    def axes(self, x: float, y: float, width: float, height: float) -> Axes:
        box = (x / _PAGE[0], 1 - (y + height) / _PAGE[1], width / _PAGE[0], height / _PAGE[1])
        return self.figure.add_axes(box)


def location_text(candidate: LesionCandidate, mri: Locale, shared: Locale) -> str:
    """Breast, clock face (or central), quadrant, depth and nipple distance, in words."""
    where = candidate.location
    parts = [shared.text(_SIDE_KEYS[candidate.laterality])]
    if where.central:
        parts.append(mri.text("central"))
    else:
        parts.append(shared.text("clock_hour", hour=where.clock_hour))
        parts.append(shared.text("quadrant_" + where.quadrant.replace(" ", "_")))
    parts.append(shared.text(f"depth_{where.depth}"))
    distance = f"{where.distance_from_nipple_mm:.0f}"
    parts.append(shared.text("from_nipple", distance=distance))
    return ", ".join(parts)


def _plot_curve(axes: Axes, candidate: LesionCandidate, result: KineticResult, mri: Locale) -> None:
    curve = np.asarray(candidate.enhancement_curve, dtype=float)
    known = bool(result.times_s) and all(t is not None for t in result.times_s)
    x = np.array([float(t or 0.0) for t in result.times_s]) if known else np.arange(len(curve))
    early = max(early_phases(result.times_s or (None,) * len(curve), result.settings))
    peak = float(curve[1 : early + 1].max())  # the early peak, as the analysis takes it
    settings = result.settings
    upper = peak + settings.persistent_above_percent / 100.0 * (100.0 + peak)
    lower = peak + settings.washout_below_percent / 100.0 * (100.0 + peak)
    top = max(float(curve.max()), upper) * 1.15 + 5
    bottom = min(float(curve.min()), 0.0) - 10
    start, end = float(x[early]), float(x[-1])
    if end > start:
        for low, high, name in (
            (upper, top, "persistent"),
            (lower, upper, "plateau"),
            (bottom, lower, "washout"),
        ):
            axes.fill_between(
                [start, end], low, high, color=_hex(CURVE_COLOURS[name]), alpha=0.2, linewidth=0
            )
    axes.plot(x, curve, marker="o", color="black", linewidth=1.4, markersize=3)
    axes.axhline(
        result.settings.enhancement_threshold_percent,
        color="#888888",
        linewidth=0.6,
        linestyle="--",
    )
    axes.set_ylim(bottom, top)
    font = FontProperties(fname=pdf_font(False), size=6.5)
    axes.set_xlabel(mri.text("time_axis" if known else "phase_axis"), fontproperties=font)
    axes.set_ylabel(mri.text("enhancement_axis"), fontproperties=font)
    for label in (*axes.get_xticklabels(), *axes.get_yticklabels()):
        label.set_fontproperties(font)
    axes.grid(True, linewidth=0.3, alpha=0.5)


def _thumbnail(
    axes: Axes, exam: DceExam, result: KineticResult, candidate: LesionCandidate, mri: Locale
) -> None:
    """The curve-type colour map on the slice through the candidate's centroid, cropped."""
    index = min(round(candidate.centroid[0]), len(exam.phases[1].slices) - 1)
    pixels = exam.phases[1].pixels(index)
    high = float(np.percentile(pixels, 99.5)) or 1.0
    grey = np.clip(pixels / high * 255.0, 0, 255).astype(np.uint8)
    rgb = curve_overlay(grey, result.curve[index])
    row_mm, column_mm = exam.pixel_spacing_mm
    _, row, column = candidate.centroid
    r0 = max(0, round(row - _THUMB_MM / row_mm))
    c0 = max(0, round(column - _THUMB_MM / column_mm))
    r1 = min(rgb.shape[0], round(row + _THUMB_MM / row_mm) + 1)
    c1 = min(rgb.shape[1], round(column + _THUMB_MM / column_mm) + 1)
    axes.imshow(rgb[r0:r1, c0:c1], interpolation="nearest", aspect=row_mm / column_mm)
    rows, columns = np.nonzero(result.labels[index] == candidate.number)
    if rows.size:
        axes.add_patch(
            Rectangle(
                (columns.min() - c0 - 1.5, rows.min() - r0 - 1.5),
                columns.max() - columns.min() + 3,
                rows.max() - rows.min() + 3,
                fill=False,
                edgecolor="white",
                linewidth=0.8,
            )
        )
    axes.set_axis_off()
    font = FontProperties(fname=pdf_font(False), size=6.5)
    axes.set_title(mri.text("curve_map", slice=index + 1), fontproperties=font)


def render_mri_summary(
    exam: DceExam, result: KineticResult, scorer: KineticScorer, language: str
) -> Figure:
    """The summary page as a matplotlib figure (not yet rasterised or written)."""
    mri, shared = catalogues(language)
    figure = Figure(figsize=_PAGE, facecolor="white")
    page = _Page(figure)
    figure.patches.append(
        Rectangle(
            (0, 1 - 0.45 / _PAGE[1]),
            1,
            0.45 / _PAGE[1],
            transform=figure.transFigure,
            facecolor=_RED,
            edgecolor="none",
        )
    )
    warning = shared.text("not_for_clinical_use")
    page.text(_PAGE[0] / 2, 0.1, warning, size=13, bold=True, color="white", ha="center")
    page.text(0.5, 0.6, mri.text("title"), size=15, bold=True)
    overview = mri.text(
        "overview", count=len(result.candidates), phases=len(exam.phases), ignored=len(exam.ignored)
    )
    page.text(0.5, 0.98, overview, size=9.5)
    if result.motion.flagged:
        motion = mri.text("motion_warning", mm=shared.number(result.motion.magnitude_mm))
        page.text(0.5, 1.2, motion, size=8.5, bold=True, color=_RED)
    ranked = sorted(result.candidates, key=lambda c: (-c.score, c.number))
    if not ranked:
        settings = result.settings
        page.text(
            0.5,
            _TOP + 0.1,
            mri.text(
                "no_candidates",
                volume=f"{settings.min_volume_mm3:g}",
                threshold=f"{settings.enhancement_threshold_percent:g}",
            ),
            size=9.5,
        )
    for row, candidate in enumerate(ranked[:MAX_CANDIDATES]):
        y = _TOP + row * _ROW
        heading = f"{candidate.number}. {location_text(candidate, mri, shared)}"
        page.text(0.5, y, textwrap.fill(heading, 88), size=8.5, bold=True, linespacing=1.2)
        _plot_curve(page.axes(1.0, y + 0.45, 2.9, 1.1), candidate, result, mri)
        _thumbnail(page.axes(4.1, y + 0.5, 1.2, 1.2), exam, result, candidate, mri)
        lines = [
            mri.text("curve", curve=mri.text(f"curve_{candidate.curve}")),
            mri.text("volume", volume=shared.number(candidate.volume_mm3, 0)),
            mri.text("max_enhancement", value=shared.number(candidate.max_enhancement_percent, 0)),
            mri.text("ser", value=shared.number(candidate.mean_ser, 2)),
            mri.text("score", score=shared.number(candidate.score, 2)),
        ]
        page.text(5.6, y + 0.5, "\n".join(lines), size=7.5, linespacing=1.5)
        derivation = scorer.explain(candidate.features, mri)
        page.text(5.6, y + 1.4, textwrap.fill(derivation, 42), size=6.5, color="#333333")
    if len(ranked) > MAX_CANDIDATES:
        more = mri.text("more_candidates", count=len(ranked) - MAX_CANDIDATES)
        page.text(0.5, _TOP + MAX_CANDIDATES * _ROW - 0.1, more, size=8.5)
    _footer(page, result, scorer, mri, shared)
    return figure


def _footer(
    page: _Page, result: KineticResult, scorer: KineticScorer, mri: Locale, shared: Locale
) -> None:
    settings = result.settings
    spec = scorer.spec
    if isinstance(scorer, RuleScorer):
        explained = mri.text(
            "rule_explained",
            threshold=f"{settings.enhancement_threshold_percent:g}",
            persistent=f"{settings.persistent_above_percent:g}",
            washout=f"{abs(settings.washout_below_percent):g}",
        )
    else:
        explained = mri.text(
            "learned_explained",
            name=spec.name,
            version=spec.version,
            training_data=spec.training_data,
        )
    notes = [explained, mri.text("location_note")]
    y = _TOP + MAX_CANDIDATES * _ROW + 0.15
    for note in notes:
        wrapped = textwrap.fill(note, 125)
        page.text(0.5, y, wrapped, size=7, color="#333333", linespacing=1.3)
        y += 0.16 * (wrapped.count("\n") + 1) + 0.1
    cad = f"{shared.text('model')}: {KINETIC_CAD.name} {KINETIC_CAD.version}"
    if spec != KINETIC_CAD:
        cad += f"; {spec.name} {spec.version}"
    line = f"{cad} · {shared.text('generated_by', version=NODE_SOFTWARE_VERSION)}"
    page.text(0.5, y + 0.05, line, size=7.5)
    disclaimer = textwrap.fill(shared.text("disclaimer"), 125)
    page.text(0.5, y + 0.32, disclaimer, size=7, linespacing=1.3)
    warning = shared.text("not_for_clinical_use")
    page.text(_PAGE[0] / 2, 11.3, warning, size=12, bold=True, color=_RED, ha="center")
