"""Every DICOM object the node writes for one exam and one model version.

Each output kind has one builder; a destination chooses the kinds it receives (config), and
the pipeline builds the union once. The outputs carry deterministic UIDs (see
:func:`node.writers.provenance.output_uid`), so a retried job re-sends the same instances
and PACS stores them once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
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

__all__ = ["DEFAULT_OUTPUT_KINDS", "OUTPUT_KINDS", "BuildOptions", "Output", "build_outputs"]


@dataclass(frozen=True)
class Output:
    kind: str  # one of OUTPUT_KINDS
    dataset: Dataset


@dataclass(frozen=True)
class BuildOptions:
    """What the site chooses about its outputs (settings), the same for every exam."""

    language: str = "en"  # of the human-readable summaries (node/writers/locales)


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


def build_outputs(
    sources: Sequence[Dataset],
    exam: ExamResult,
    kinds: Collection[str] = DEFAULT_OUTPUT_KINDS,
    options: BuildOptions = BuildOptions(),
) -> list[Output]:
    """Build the requested kinds (and what they depend on is built first, in order)."""
    unknown = set(kinds) - set(OUTPUT_KINDS)
    if unknown:
        raise ValueError(f"unknown output kinds {sorted(unknown)}; known: {list(OUTPUT_KINDS)}")
    wanted = set(kinds)
    if "tid1500" in wanted:
        wanted.add("seg")  # the SR references the SEG segments
    built: list[Output] = []
    for kind, builder in OUTPUT_KINDS.items():
        if kind in wanted:
            built += [Output(kind, dataset) for dataset in builder(sources, exam, built, options)]
    return built
