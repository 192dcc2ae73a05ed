"""Every DICOM object the node writes for one exam and one model version.

The outputs carry deterministic UIDs (see :func:`node.writers.provenance.output_uid`), so a
retried job re-sends the same instances and PACS stores them once.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset

from node.domain import ExamResult
from node.writers.seg import build_segmentations
from node.writers.sr import build_measurement_report

__all__ = ["build_outputs"]


def build_outputs(sources: Sequence[Dataset], exam: ExamResult) -> list[Dataset]:
    """The SEG objects (one per source image) followed by the TID 1500 SR."""
    segmentations = build_segmentations(sources, exam)
    report = build_measurement_report(sources, exam, segmentations)
    return [*segmentations, report]
