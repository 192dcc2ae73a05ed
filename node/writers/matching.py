"""One lesion, however many views show it: cross-view matching and the finding vocabulary.

A model reports findings per image. A reader thinks in lesions: the same mass seen on CC
and MLO of one breast is one lesion. Every writer (CAD SR, TID 1500, GSPS, summary image,
PDF) takes its findings from :func:`exam_lesions`, so all of them name and number the
same lesions the same way.

Matching (CC with MLO of the same breast, same kind): a lesion keeps roughly its distance
from the nipple between the two views (the basis of the "arc" triangulation readers use),
and a model scores one lesion alike on both. A pair matches when its depths, as fractions
of the nipple-to-chest-wall distance (:mod:`node.writers.location`), differ by at most
``DEPTH_TOLERANCE`` and its scores by at most ``SCORE_TOLERANCE``; pairs are taken greedily,
closest first, each finding in at most one lesion.

Vocabulary (PS3.16): a finding seen on one view is a Single Image Finding from CID 6014,
which has no "mass": BI-RADS calls a mass only what is seen on two projections, and
CID 6014 offers (129793001, SCT, "Mammography breast density") for a one-view opacity
(PS3.17 E.1 builds its "mass" the same way: two single-image densities, one composite
feature). Matched on CC and MLO it is a Composite Feature (TID 4004) from CID 6016:
(129788004, SCT, "Mammographic breast mass"). Calcification clusters are
(129769006, SCT, "Calcification Cluster") in both groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from node.domain import ExamResult, Finding, ImageResult
from node.writers.location import (
    BreastGeometry,
    Placement,
    breast_geometry,
    clock_hour,
    place,
    quadrant,
)
from node.writers.seg import pair_sources

__all__ = [
    "DEPTH_TOLERANCE",
    "SCORE_TOLERANCE",
    "Lesion",
    "Mark",
    "exam_lesions",
    "finding_concept",
    "lesion_index",
    "lesions_of",
]

DEPTH_TOLERANCE: Final = 0.15
SCORE_TOLERANCE: Final = 0.35

_SINGLE_VIEW: Final[dict[str, Code]] = {  # CID 6014 Mammography Single Image Finding
    "mass": Code("129793001", "SCT", "Mammography breast density"),
    "calcification": Code("129769006", "SCT", "Calcification Cluster"),
}
_COMPOSITE: Final[dict[str, Code]] = {  # CID 6016 Mammography Composite Feature
    "mass": Code("129788004", "SCT", "Mammographic breast mass"),
    "calcification": Code("129769006", "SCT", "Calcification Cluster"),
}


def finding_concept(kind: str, views: int) -> Code:
    """The PS3.16 concept of a finding of ``kind`` seen on ``views`` views (see above)."""
    table = _COMPOSITE if views > 1 else _SINGLE_VIEW
    if kind not in table:
        raise ValueError(f"finding kind {kind!r} has no PS3.16 concept; one of {sorted(table)}")
    return table[kind]


@dataclass(frozen=True)
class Mark:
    """One finding on one image, with where its image puts the breast."""

    source: Dataset
    image: ImageResult
    index: int  # position in image.prediction.findings (the SEG segment is index + 1)
    geometry: BreastGeometry

    @property
    def finding(self) -> Finding:
        return self.image.prediction.findings[self.index]

    @property
    def view(self) -> str:
        return self.image.source.ViewPosition


@dataclass(frozen=True)
class Lesion:
    """One lesion: a finding on one view, or the same finding matched on CC and MLO."""

    number: int  # 1-based, in order of decreasing score: what every writer prints
    laterality: str
    kind: str
    marks: tuple[Mark, ...]

    @property
    def score(self) -> float:
        return max(mark.finding.score for mark in self.marks)

    @property
    def composite(self) -> bool:
        return len(self.marks) > 1

    @property
    def concept(self) -> Code:
        return finding_concept(self.kind, len(self.marks))

    @property
    def label_key(self) -> str:
        """Locale key of the lesion's name, the same concept as :attr:`concept`."""
        if self.kind == "mass":
            return "kind_mass" if self.composite else "kind_density"
        return f"kind_{self.kind}"

    @property
    def views(self) -> str:
        """ "R CC + R MLO": where it is seen."""
        return " + ".join(f"{self.laterality} {mark.view}".strip() for mark in self.marks)

    @property
    def placement(self) -> Placement:
        return place([(m.geometry, m.finding, m.view) for m in self.marks])

    @property
    def quadrant(self) -> str | None:
        return quadrant(self.placement)

    @property
    def clock_hour(self) -> int | None:
        return clock_hour(self.placement, self.laterality)


def _is_cc(view: str) -> bool:
    return view.startswith("CC") or view in ("XCCL", "XCCM")


def _pairs(marks: Sequence[Mark]) -> list[tuple[float, Mark, Mark]]:
    candidates = []
    for cc in (m for m in marks if _is_cc(m.view)):
        for other in (m for m in marks if not _is_cc(m.view)):
            if cc.finding.kind != other.finding.kind:
                continue
            depth = abs(
                cc.geometry.depth_fraction(cc.finding)
                - other.geometry.depth_fraction(other.finding)
            )
            score = abs(cc.finding.score - other.finding.score)
            if depth <= DEPTH_TOLERANCE and score <= SCORE_TOLERANCE:
                candidates.append((depth / DEPTH_TOLERANCE + score / SCORE_TOLERANCE, cc, other))
    return sorted(candidates, key=lambda c: c[0])


def exam_lesions(pairs: Sequence[tuple[Dataset, ImageResult]]) -> list[Lesion]:
    """The exam's lesions, numbered by decreasing score (then by breast, view, position)."""
    groups: list[tuple[str, tuple[Mark, ...]]] = []
    for laterality in ("R", "L"):
        marks = [
            Mark(source, image, index, breast_geometry(source, laterality, image.pixels))
            for source, image in pairs
            if image.source.ImageLaterality == laterality
            for index in range(len(image.prediction.findings))
        ]
        used: set[int] = set()
        for _, cc, other in _pairs(marks):
            if id(cc) in used or id(other) in used:
                continue
            used |= {id(cc), id(other)}
            groups.append((laterality, (cc, other)))
        groups += [(laterality, (m,)) for m in marks if id(m) not in used]

    def order(group: tuple[str, tuple[Mark, ...]]) -> tuple[float, str, str, float, float]:
        laterality, marks = group
        first = marks[0]
        return (
            -max(m.finding.score for m in marks),
            laterality,
            first.view,
            first.finding.row,
            first.finding.column,
        )

    return [
        Lesion(number, laterality, marks[0].finding.kind, marks)
        for number, (laterality, marks) in enumerate(sorted(groups, key=order), start=1)
    ]


def lesion_index(lesions: Sequence[Lesion]) -> dict[tuple[str, int], Lesion]:
    """Each finding's lesion, by (source SOP Instance UID, index of the finding)."""
    return {
        (mark.image.source.SOPInstanceUID, mark.index): lesion
        for lesion in lesions
        for mark in lesion.marks
    }


def lesions_of(sources: Sequence[Dataset], exam: ExamResult) -> list[Lesion]:
    """:func:`exam_lesions` of an exam's results paired with their sources."""
    return exam_lesions(pair_sources(sources, exam))
