"""Breast MRI: DCE assembly, kinetic analysis (BI-RADS MRI lexicon) and its DICOM outputs.

The room sits above ``writers`` (it reuses their provenance) and below ``jobs`` / ``ingest``,
which may call :func:`kinetic_outputs` for a study routed as MR DCE. The lesion score is a
rule-based heuristic; no learned scorer ships (no labelled breast MRI exists here).

    assembly   MR images -> DceExam (phases, pre-contrast first; ignored series with reasons)
    kinetics   DceExam -> KineticResult (motion, breast mask, PE, SER, curve types, candidates)
    writers    KineticResult -> SEG, RGB SC colour map, TID 1500 SR
    outputs    the output kinds the node publishes, each built on its own
    phantom, synthetic_dicom   the synthetic DCE study for tests, demo and benchmark

The node routes breast DCE studies here (node.ingest.routing) and its pipeline builds
:data:`MRI_OUTPUT_KINDS` (node.jobs.mri_stages). Not yet (issue 13): Enhanced MR
multi-frame input (recorded as ignored); non-canonical orientations (refused); clock-face location; a Parametric Map; the en/ru/kk summary with
the kinetic curves plotted; a learned scorer (none ships: no labelled breast MRI here).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.dataset import Dataset

from node.mri.assembly import DceExam, IgnoredSeries, assemble_dce
from node.mri.kinetics import KineticResult, KineticSettings, LesionCandidate, analyse
from node.mri.outputs import MRI_OUTPUT_KINDS, build_kinetic_outputs
from node.mri.writers import KINETIC_CAD

__all__ = [
    "KINETIC_CAD",
    "MRI_OUTPUT_KINDS",
    "DceExam",
    "IgnoredSeries",
    "KineticResult",
    "KineticSettings",
    "LesionCandidate",
    "analyse",
    "assemble_dce",
    "build_kinetic_outputs",
    "kinetic_outputs",
]


def kinetic_outputs(
    datasets: Iterable[Dataset], settings: KineticSettings | None = None
) -> tuple[KineticResult, list[Dataset]]:
    """Assemble, analyse and write one MR study: (result, [SEG, SR, *colour map images, ...]),
    every kind of :data:`MRI_OUTPUT_KINDS` in its order.

    Raises InvalidInput (a FinalError) for a study that holds no usable DCE series.
    """
    exam = assemble_dce(datasets)
    result = analyse(exam, settings)
    return result, [output.dataset for output in build_kinetic_outputs(exam, result)]
