"""Every DICOM object the node writes for one exam and one model version.

Each output kind has one builder; a destination chooses the kinds it receives (config), and
the pipeline builds the union once. The outputs carry deterministic UIDs (see
:func:`node.writers.provenance.output_uid`), so a retried job re-sends the same instances
and PACS stores them once.

Each kind is built on its own: a kind that cannot be built valid (a ValueError, which every
writer and highdicom raise for invalid content) is recorded in
:attr:`BuiltOutputs.failures` and logged, and the other kinds are still built, so one bad
mark never costs the reader every other result. A kind whose input kind failed (TID 1500
without its SEG) fails with it. Only when nothing at all could be built is it an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from node.domain import ExamResult
from node.writers.cad_sr import build_mammography_cad_report
from node.writers.gsps import build_presentation_states
from node.writers.heatmap_bands import heatmap_bands
from node.writers.heatmap_seg import build_heatmap_segmentations
from node.writers.report_pdf import build_report_pdf
from node.writers.seg import build_segmentations
from node.writers.sr import build_measurement_report
from node.writers.summary import build_summary_image

__all__ = [
    "DEFAULT_OUTPUT_KINDS",
    "OUTPUT_KINDS",
    "BuildOptions",
    "BuiltOutputs",
    "Output",
    "build_outputs",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    kind: str  # one of OUTPUT_KINDS
    dataset: Dataset


@dataclass(frozen=True)
class BuildOptions:
    """What the site chooses about its outputs (settings), the same for every exam."""

    language: str = "en"  # of the human-readable summaries (node/writers/locales)


class BuiltOutputs(list[Output]):
    """The outputs built, in build order, and why each kind that could not be built failed."""

    def __init__(self, outputs: Iterable[Output] = (), failures: dict[str, str] | None = None):
        super().__init__(outputs)
        self.failures: dict[str, str] = dict(failures or {})


# A builder receives the sources, the exam, the outputs built before it (in OUTPUT_KINDS
# order, so an SR can reference the SEG it describes) and the site's options.
Builder = Callable[[Sequence[Dataset], ExamResult, Sequence[Output], BuildOptions], list[Dataset]]


def _seg(
    sources: Sequence[Dataset], exam: ExamResult, _built: Sequence[Output], _options: BuildOptions
) -> list[Dataset]:
    return build_segmentations(sources, exam)


def _tid1500(
    sources: Sequence[Dataset], exam: ExamResult, built: Sequence[Output], _options: BuildOptions
) -> list[Dataset]:
    segmentations = [o.dataset for o in built if o.kind == "seg"]
    return [build_measurement_report(sources, exam, segmentations)]


def _summary_sc(
    sources: Sequence[Dataset], exam: ExamResult, _built: Sequence[Output], options: BuildOptions
) -> list[Dataset]:
    return [build_summary_image(sources, exam, language=options.language)]


def _summary_pdf(
    sources: Sequence[Dataset], exam: ExamResult, _built: Sequence[Output], options: BuildOptions
) -> list[Dataset]:
    return [build_report_pdf(sources, exam, language=options.language)]


def _cad_sr(
    sources: Sequence[Dataset], exam: ExamResult, _built: Sequence[Output], _options: BuildOptions
) -> list[Dataset]:
    return [build_mammography_cad_report(sources, exam)]


def _gsps(
    sources: Sequence[Dataset], exam: ExamResult, _built: Sequence[Output], _options: BuildOptions
) -> list[Dataset]:
    return build_presentation_states(sources, exam)


def _heatmap_seg(
    sources: Sequence[Dataset], exam: ExamResult, _built: Sequence[Output], _options: BuildOptions
) -> list[Dataset]:
    return build_heatmap_segmentations(sources, exam)


#: Output kinds in build order, each with its builder.
OUTPUT_KINDS: dict[str, Builder] = {
    "seg": _seg,  # binary lesion masks, one SEG per source image (TID 1500 references them)
    "tid1500": _tid1500,  # Comprehensive SR "Imaging Measurement Report" (OHIF reads it)
    "summary_sc": _summary_sc,  # Secondary Capture: the marked views and the verdict
    "summary_pdf": _summary_pdf,  # Encapsulated PDF: the one-page report
    "cad_sr": _cad_sr,  # Mammography CAD SR (TID 4000): what breast workstations render
    "gsps": _gsps,  # Grayscale Softcopy Presentation State per image: outlines and scores
    "heatmap_seg": _heatmap_seg,  # FRACTIONAL SEG per image: the lesion-probability map
    "heatmap_bands": heatmap_bands,  # BINARY SEG per image: the map in coloured bands (OHIF)
}

DEFAULT_OUTPUT_KINDS: tuple[str, ...] = ("seg", "tid1500")
#: Kinds built from another kind's outputs: they cannot be built when that kind failed.
_NEEDS: dict[str, str] = {"tid1500": "seg"}


def build_outputs(
    sources: Sequence[Dataset],
    exam: ExamResult,
    kinds: Collection[str] = DEFAULT_OUTPUT_KINDS,
    options: BuildOptions = BuildOptions(),
) -> BuiltOutputs:
    """Build the requested kinds (and what they depend on first, in order), each on its own.

    Raises ValueError for an unknown kind, and when no kind could be built (the reasons of
    every kind in the message); otherwise a failed kind is in ``failures``.
    """
    unknown = set(kinds) - set(OUTPUT_KINDS)
    if unknown:
        raise ValueError(f"unknown output kinds {sorted(unknown)}; known: {list(OUTPUT_KINDS)}")
    return build_each(
        list(OUTPUT_KINDS),
        kinds,
        _NEEDS,  # the SR evidence lists the SEG
        lambda kind, built: OUTPUT_KINDS[kind](sources, exam, built, options),
        name="output",
        study=exam.StudyInstanceUID,
    )


def build_each(
    order: Sequence[str],
    kinds: Collection[str],
    needs: Mapping[str, str],
    build: Callable[[str, BuiltOutputs], list[Dataset]],
    *,
    name: str,
    study: str,
) -> BuiltOutputs:
    """Build ``kinds`` (plus the kinds they need) in ``order``, each on its own: a kind that
    raises ValueError (as every writer and highdicom do for an object they cannot make
    valid) is recorded in ``failures`` and the others are still built; a kind whose needed
    kind failed is not tried. Raises ValueError only when nothing could be built. Shared by
    the mammography and the MR outputs."""
    wanted = set(kinds) | {needs[kind] for kind in kinds if kind in needs}
    built = BuiltOutputs()
    for kind in order:
        if kind not in wanted:
            continue
        needed = needs.get(kind)
        if needed is not None and needed in built.failures:
            built.failures[kind] = f"not built: {needed} failed"
            continue
        try:
            datasets = build(kind, built)
        except ValueError as error:
            built.failures[kind] = str(error)
            log.warning("%s %s of study %s not built: %s", name, kind, study, error)
            continue
        built += [Output(kind, dataset) for dataset in datasets]
    if built.failures and not built:
        reasons = "; ".join(f"{kind}: {why}" for kind, why in built.failures.items())
        raise ValueError(f"no {name} could be built ({reasons})")
    return built
