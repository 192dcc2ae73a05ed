"""The kinetic CAD's output kinds, each built on its own, as the node publishes them.

The kinds share their names with the mammography outputs (node.writers.outputs) where they
mean the same to a destination: ``seg`` is the lesion SEG, ``tid1500`` the Imaging
Measurement Report; ``kinetic_map`` (the curve-type colour map) is MR's own. A destination's
``outputs:`` selection (node.delivery.selection) therefore works for both modalities.

A kind that cannot be built valid (ValueError, as every writer and highdicom raise) is
recorded in :attr:`BuiltOutputs.failures` and the other kinds are still built; the SR needs
the SEG it references, so it fails with it. A new MR output is one more entry in
:data:`MRI_OUTPUT_KINDS`: :func:`node.mri.kinetic_outputs` and the node's pipeline both
build from it, so the node publishes it without knowing it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

from pydicom.dataset import Dataset

from node.mri.assembly import DceExam
from node.mri.kinetics import KineticResult
from node.mri.scoring import RULE_SCORER, KineticScorer
from node.mri.summary import build_mri_summary, build_mri_summary_pdf
from node.mri.writers import build_colour_map, build_lesion_seg, build_mri_report
from node.writers.outputs import BuiltOutputs, Output, build_each

__all__ = ["MRI_OUTPUT_KINDS", "MriBuilder", "MriOutputOptions", "build_kinetic_outputs"]


@dataclass(frozen=True)
class MriOutputOptions:
    """What the outputs depend on beyond the analysis: the scorer that scored the candidates
    (the reports name it) and the summary's languages (en, ru, kk)."""

    scorer: KineticScorer = RULE_SCORER
    languages: tuple[str, ...] = ("en",)


#: A builder gets the exam, the analysis, the outputs built before it (in kind order) and
#: the options.
MriBuilder = Callable[[DceExam, KineticResult, Sequence[Output], MriOutputOptions], list[Dataset]]


def _seg(
    exam: DceExam, result: KineticResult, _built: Sequence[Output], _options: MriOutputOptions
) -> list[Dataset]:
    return [build_lesion_seg(exam, result)]


def _tid1500(
    exam: DceExam, result: KineticResult, built: Sequence[Output], options: MriOutputOptions
) -> list[Dataset]:
    seg = next(o.dataset for o in built if o.kind == "seg")
    return [build_mri_report(exam, result, seg, options.scorer)]


def _kinetic_map(
    exam: DceExam, result: KineticResult, _built: Sequence[Output], _options: MriOutputOptions
) -> list[Dataset]:
    return build_colour_map(exam, result)


def _summary_sc(
    exam: DceExam, result: KineticResult, _built: Sequence[Output], options: MriOutputOptions
) -> list[Dataset]:
    return [build_mri_summary(exam, result, options.scorer, lang) for lang in options.languages]


def _summary_pdf(
    exam: DceExam, result: KineticResult, _built: Sequence[Output], options: MriOutputOptions
) -> list[Dataset]:
    return [build_mri_summary_pdf(exam, result, options.scorer, lang) for lang in options.languages]


#: Output kinds in build order, each with its builder.
MRI_OUTPUT_KINDS: Final[dict[str, MriBuilder]] = {
    "seg": _seg,  # the lesion candidates, one segment each (the SR references them)
    "tid1500": _tid1500,  # TID 1500 SR: one group per candidate (stock OHIF reads it)
    "kinetic_map": _kinetic_map,  # RGB Secondary Capture per slice: the curve-type colours
    "summary_sc": _summary_sc,  # Secondary Capture per language: kinetic curves, locations
    "summary_pdf": _summary_pdf,  # Encapsulated PDF per language: the same page
}
#: Kinds built from another kind's outputs: they cannot be built when that kind failed.
_NEEDS: Final = {"tid1500": "seg"}


def build_kinetic_outputs(
    exam: DceExam,
    result: KineticResult,
    kinds: Collection[str] | None = None,
    options: MriOutputOptions | None = None,
) -> BuiltOutputs:
    """Build ``kinds`` (every kind when None; unknown kinds are another modality's and
    ignored), each on its own. Raises ValueError only when nothing could be built."""
    chosen = options or MriOutputOptions()
    return build_each(
        list(MRI_OUTPUT_KINDS),
        [k for k in (MRI_OUTPUT_KINDS if kinds is None else kinds) if k in MRI_OUTPUT_KINDS],
        _NEEDS,
        lambda kind, built: MRI_OUTPUT_KINDS[kind](exam, result, built, chosen),
        name="MR output",
        study=exam.StudyInstanceUID,
    )
