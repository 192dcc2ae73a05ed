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

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

from pydicom.dataset import Dataset

from node.mri.assembly import DceExam
from node.mri.kinetics import KineticResult
from node.mri.scoring import RULE_SCORER, KineticScorer
from node.mri.summary import build_mri_summary, build_mri_summary_pdf
from node.mri.writers import build_colour_map, build_lesion_seg, build_mri_report
from node.writers.outputs import BuiltOutputs, Output

__all__ = ["MRI_OUTPUT_KINDS", "MriBuilder", "MriOutputOptions", "build_kinetic_outputs"]

log = logging.getLogger(__name__)


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
    wanted = set(MRI_OUTPUT_KINDS if kinds is None else kinds)
    wanted |= {_NEEDS[kind] for kind in wanted if kind in _NEEDS}
    built = BuiltOutputs()
    for kind, builder in MRI_OUTPUT_KINDS.items():
        if kind not in wanted:
            continue
        needed = _NEEDS.get(kind)
        if needed is not None and needed in built.failures:
            built.failures[kind] = f"not built: {needed} failed"
            continue
        try:
            datasets = builder(exam, result, built, options or MriOutputOptions())
        except ValueError as error:
            built.failures[kind] = str(error)
            log.warning(
                "MR output %s of study %s not built: %s", kind, exam.StudyInstanceUID, error
            )
            continue
        built += [Output(kind, dataset) for dataset in datasets]
    if built.failures and not built:
        reasons = "; ".join(f"{kind}: {why}" for kind, why in built.failures.items())
        raise ValueError(f"no MR output could be built ({reasons})")
    return built
