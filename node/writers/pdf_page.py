"""One PDF page drawn with reportlab, in inches from the top-left corner, text wrapped to fit.

Text is real text (searchable, copyable, read by ``pdftotext``) in the PDF font of
:func:`node.writers.render.pdf_font`, embedded as subset TrueType; characters that font lacks
print as "?". Every block of text is wrapped by its measured width and says where it ends,
so the caller lays the next one below it and nothing overlaps. The document has no dates and
a fixed identifier (reportlab's ``invariant``): the same drawing gives the same bytes.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Sequence
from typing import Any, Final

from PIL import Image
from reportlab import rl_config
from reportlab.lib.colors import Color, black
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase.pdfdoc import PDFDictionary, PDFInfo, PDFString
from reportlab.pdfbase.pdfmetrics import getFont, registerFont, stringWidth
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from node.writers.render import pdf_font, pdf_font_characters

__all__ = ["HEIGHT", "RIGHT", "WIDTH", "Page", "drawable", "wrap"]

_IN: Final = 72.0  # points per inch
WIDTH: Final = A4[0] / _IN
HEIGHT: Final = A4[1] / _IN
RIGHT: Final = WIDTH - 0.4  # right edge of the text
_LEFT: Final = 0.6
_ASCENT: Final = 0.76  # DejaVu Sans capitals above the baseline, in font sizes
_LEADING: Final = 1.3  # line pitch within a block of text, in font sizes
_FONT_LOCK: Final = threading.Lock()

# Streams as plain Flate, without reportlab's default ASCII85 on top: a quarter smaller and
# not encoded in Python; a PDF inside DICOM never travels as 7-bit text.
rl_config.useA85 = 0


@functools.cache
def _fonts() -> tuple[str, str]:
    """The regular and bold PDF fonts, registered with reportlab once per process."""
    with _FONT_LOCK:
        names = ("MammoNodeSans", "MammoNodeSans-Bold")
        for name, bold in zip(names, (False, True), strict=True):
            registerFont(TTFont(name, str(pdf_font(bold))))
        return names


class _Info(PDFInfo):  # type: ignore[misc]
    """Document information without dates, author or subject: same drawing, same bytes."""

    def format(self, document: Any) -> Any:
        entries = {"Title": self.title, "Creator": self.creator, "Producer": self.producer}
        return PDFDictionary({k: PDFString(v) for k, v in entries.items()}).format(document)


def drawable(text: str) -> str:
    """``text`` with "?" for characters the font lacks (a name in a script it does not
    cover): a visible mark, never an empty box that reads as a letter."""
    known = pdf_font_characters()
    return "".join(c if c in known or c == "\n" else "?" for c in text)


def wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Lines of ``text`` no wider than ``width`` inches, broken at spaces; a word wider than
    the column (a UID) fills the line and goes on on the next."""
    space = stringWidth(" ", font, size) / _IN
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, used = "", 0.0
        for word in paragraph.split():
            needed = stringWidth(word, font, size) / _IN
            gap = space if line else 0.0
            if used + gap + needed <= width:
                line, used = f"{line} {word}" if line else word, used + gap + needed
            elif needed <= width:
                lines.append(line)
                line, used = word, needed
            else:
                line, used = (f"{line} ", used + space) if line else ("", 0.0)
                for char in word:
                    advance = stringWidth(char, font, size) / _IN
                    if used + advance > width and line.strip():
                        lines.append(line.rstrip())
                        line, used = "", 0.0
                    line, used = line + char, used + advance
        lines.append(line)
    return lines


class Page:
    """An A4 portrait page; :meth:`finish` gives the PDF bytes."""

    def __init__(self, title: str, author: str) -> None:
        self.buffer = io.BytesIO()
        regular = _fonts()[0]  # the initial font too, or reportlab adds an unused Helvetica
        self.canvas = Canvas(
            self.buffer, pagesize=A4, invariant=1, pageCompression=1, initialFontName=regular
        )
        self.canvas._doc.info = _Info()  # reportlab always writes dates otherwise
        self.canvas.setTitle(title)
        self.canvas.setCreator(author)
        self.canvas.setProducer(author)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float = 9,
        *,
        bold: bool = False,
        color: Color = black,
        width: float | None = None,
        centred: bool = False,
        draw: bool = True,
    ) -> float:
        """Draws ``text`` with its top at ``y``, wrapped at ``width`` inches (default: to the
        right edge, or the text width when centred on ``x``); returns the y below its last
        line. ``draw=False`` only measures."""
        font = _fonts()[bold]
        width = width or (RIGHT - _LEFT if centred else RIGHT - x)
        lines = wrap(drawable(text), font, size, width)
        pitch = _LEADING * size / _IN
        if draw:
            self.canvas.setFont(font, size)
            self.canvas.setFillColor(color)
            for number, line in enumerate(lines):
                baseline = (HEIGHT - y - number * pitch) * _IN - _ASCENT * size
                if centred:
                    self.canvas.drawCentredString(x * _IN, baseline, line)
                else:
                    self.canvas.drawString(x * _IN, baseline, line)
        return y + pitch * len(lines)

    def fields(
        self, x: float, y: float, rows: Sequence[tuple[str, str]], width: float, draw: bool = True
    ) -> float:
        """Label: value blocks at 8.5 pt, wrapped at ``width`` inches; returns the y below."""
        for label, value in rows:
            line = f"{label}: {value}" if label else value
            y = self.text(x, y, line, size=8.5, width=width, draw=draw) + 0.035
        return y

    def row(self, columns: Sequence[float], cells: Sequence[str], y: float, bold: bool) -> float:
        """One table row at 8 pt, each cell wrapped to its column (the last one to the right
        edge); returns the y below its tallest cell."""
        edges = [*columns[1:], RIGHT + 0.08]
        return max(
            self.text(x, y, cell, size=8, bold=bold, width=right - x - 0.08)
            for x, right, cell in zip(columns, edges, cells, strict=True)
        )

    def band(self, height: float, color: Color) -> None:
        """A full-width band of ``color`` at the top of the page."""
        self.canvas.setFillColor(color)
        self.canvas.rect(0, (HEIGHT - height) * _IN, A4[0], height * _IN, stroke=0, fill=1)

    def image(self, image: Image.Image, x: float, y: float, height: float) -> float:
        """``image`` (lossless, Flate) with its top-left corner at (x, y), ``height`` inches
        tall; returns its width in inches."""
        width = height * image.width / image.height
        bottom = (HEIGHT - y - height) * _IN
        self.canvas.drawImage(ImageReader(image), x * _IN, bottom, width * _IN, height * _IN)
        return width

    def finish(self) -> bytes:
        """The one-page PDF."""
        self.canvas.showPage()
        self.canvas.save()
        return self.buffer.getvalue()

    def release(self) -> None:
        """Drops this document from the fonts' subset state, which reportlab keeps in the
        process-wide font objects until the document is saved: a page abandoned on an error
        would otherwise stay in memory for good."""
        for name in _fonts():
            getFont(name).state.pop(self.canvas._doc, None)
