"""The PDF report page as drawn with reportlab: embedded subset TrueType text, no two words on
top of each other in any language, and the same bytes from another process.

Checked with pdffonts and pdftotext -bbox from poppler-utils.
"""

from __future__ import annotations

import copy
import hashlib
import html
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from reportlab.pdfbase.pdfmetrics import getFont
from test_summary import _document, _exam, _pdf, _poppler

from node.domain import Finding
from node.writers.locales import LANGUAGES, load_locale
from node.writers.pdf_page import Page
from node.writers.report_pdf import MAX_FINDING_ROWS, render_report

ROOT = Path(__file__).resolve().parents[1]
_WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>'
)


def _words(document: bytes, tmp_path: Path) -> list[tuple[float, float, float, float, str]]:
    """Every word pdftotext reads, with its box in points from the top-left corner."""
    path = tmp_path / "page.pdf"
    path.write_bytes(document)
    done = subprocess.run(
        ["pdftotext", "-bbox", str(path), "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [
        (float(a), float(b), float(c), float(d), html.unescape(word))
        for a, b, c, d, word in _WORD.findall(done.stdout)
    ]


def _crowded_document(language: str) -> bytes:
    """A page with every findings row taken, rows left out, and a long patient name."""
    sources, exam = _exam()
    many = [
        Finding(20.0 + 8 * n, 40.0, 3.0, 0.5 + n / 100, kind="calcification")
        for n in range(MAX_FINDING_ROWS + 3)
    ]
    image = exam.images[0]
    crowded = replace(image, prediction=replace(image.prediction, findings=many))
    first = copy.deepcopy(sources[0])  # the cached sources stay as they are
    first.PatientName = "Abercrombie-Featherstonehaugh^Maximiliana Konstantina"
    crowded_exam = replace(exam, images=[crowded, *exam.images[1:]])
    return render_report([first, *sources[1:]], crowded_exam, load_locale(language))


@pytest.mark.parametrize("language", LANGUAGES)
def test_fonts_are_embedded_subset_truetype_read_as_unicode(language: str, tmp_path: Path) -> None:
    listing = _poppler("pdffonts", _document(_pdf(language)), tmp_path).splitlines()[2:]
    assert len(listing) == 2, listing  # regular and bold; nothing else, no base-14 font
    for line in listing:  # name, type (maybe two words), encoding, emb, sub, uni, id
        fields = line.split()
        kind, (embedded, subset, unicode) = " ".join(fields[1:-6]), fields[-5:-2]
        assert re.fullmatch(r"[A-Z]{6}\+DejaVuSans(-Bold)?", fields[0]), line
        assert (kind, embedded, subset, unicode) == ("TrueType", "yes", "yes", "yes"), line


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_two_words_overlap_and_all_stay_on_the_page(language: str, tmp_path: Path) -> None:
    for document in (_document(_pdf(language)), _crowded_document(language)):
        words = _words(document, tmp_path)
        locale = load_locale(language)
        text = " ".join(word for *_, word in words)
        assert " ".join(locale.text("not_for_clinical_use").split()) in text
        assert " ".join(locale.text("disclaimer").split()) in text
        clashes = [
            (a[4], b[4])
            for i, a in enumerate(words)
            for b in words[i + 1 :]
            if min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5
        ]
        assert clashes == []
        width, height = 595.3, 841.9  # A4, points
        assert all(
            0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height for x0, y0, x1, y1, _ in words
        )


def test_another_process_draws_the_same_bytes() -> None:
    """The embedded font carries no time of its own making: a retried job, in another worker
    process, writes the very same document."""
    child = (
        "import hashlib, sys; sys.path.insert(0, 'tests');"
        "from test_summary import _document, _pdf;"
        "print(hashlib.sha256(_document(_pdf('kk'))).hexdigest())"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == hashlib.sha256(_document(_pdf("kk"))).hexdigest()


def test_a_page_abandoned_half_drawn_is_not_kept_by_the_fonts() -> None:
    fonts = [getFont(name) for name in ("MammoNodeSans", "MammoNodeSans-Bold")]
    page = Page("title", "author")
    page.text(0.6, 1.0, "Қазақ", bold=True)  # reportlab starts a subset for this document
    assert any(page.canvas._doc in font.state for font in fonts)
    page.release()
    assert not any(page.canvas._doc in font.state for font in fonts)
