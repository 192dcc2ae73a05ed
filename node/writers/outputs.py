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
from node.writers.seg import build_segmentations
from node.writers.sr import build_measurement_report

__all__ = ["DEFAULT_OUTPUT_KINDS", "OUTPUT_KINDS", "Output", "build_outputs"]


@dataclass(frozen=True)
class Output:
    kind: str  # one of OUTPUT_KINDS
    dataset: Dataset


# A builder receives the sources, the exam and the outputs built before it (in OUTPUT_KINDS
# order), so an SR can reference the SEG it describes.
Builder = Callable[[Sequence[Dataset], ExamResult, Sequence[Output]], list[Dataset]]


def _seg(sources: Sequence[Dataset], exam: ExamResult, _built: Sequence[Output]) -> list[Dataset]:
    return build_segmentations(sources, exam)


def _tid1500(sources: Sequence[Dataset], exam: ExamResult, built: Sequence[Output]) -> list[Dataset]:
    segmentations = [o.dataset for o in built if o.kind == "seg"]
    return [build_measurement_report(sources, exam, segmentations)]


#: Output kinds in build order, each with its builder.
OUTPUT_KINDS: dict[str, Builder] = {
    "seg": _seg,  # binary lesion masks, one SEG per source image (TID 1500 references them)
    "tid1500": _tid1500,  # Comprehensive SR "Imaging Measurement Report" (OHIF reads it)
}

DEFAULT_OUTPUT_KINDS: tuple[str, ...] = ("seg", "tid1500")


def build_outputs(
    sources: Sequence[Dataset], exam: ExamResult, kinds: Collection[str] = DEFAULT_OUTPUT_KINDS
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
            built += [Output(kind, dataset) for dataset in builder(sources, exam, built)]
    return built
