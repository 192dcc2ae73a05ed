"""Breast MRI: DCE assembly, kinetic analysis (BI-RADS MRI lexicon) and its DICOM outputs.

The room sits above ``writers`` and ``models`` (it reuses their provenance, locales and
model-folder rules) and below ``jobs`` / ``ingest``, which may call :func:`kinetic_outputs`
for a study routed as MR DCE. The lesion score is a rule-based heuristic by default; a
learned scorer can be plugged in, but none is trained (no labelled breast MRI exists here).

    assembly   MR images -> DceExam (phases, pre-contrast first; ignored series with reasons)
    frames     one slice as the assembly reads it: a classic image or an Enhanced MR frame
    kinetics   DceExam -> KineticResult (motion, breast mask, PE, SER, curve types, candidates)
    location   clock face, quadrant, depth and nipple distance of each candidate
    scoring    the rule-based score (default) and the pluggable, gated learned scorer
    writers    KineticResult -> SEG, RGB SC colour map, TID 1500 SR
    summary    the en/ru/kk summary page with the kinetic curves: SC image and PDF
    outputs    the output kinds the node publishes, each built on its own
    phantom, synthetic_dicom, synthetic_enhanced   the synthetic DCE study (classic or
               Enhanced MR) for tests, demo and benchmark

The node routes breast DCE studies here (node.ingest.routing) and its pipeline builds
:data:`MRI_OUTPUT_KINDS` (node.jobs.mri_stages). Enhanced MR (multi-frame) sources are
assembled frame by frame and referenced by frame number. Not yet (issue 13): non-canonical
orientations (refused); a Parametric Map.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydicom.dataset import Dataset

from node.mri.assembly import DceExam, IgnoredSeries, assemble_dce
from node.mri.kinetics import KineticResult, KineticSettings, LesionCandidate, analyse, rescored
from node.mri.outputs import MRI_OUTPUT_KINDS, MriOutputOptions, build_kinetic_outputs
from node.mri.scoring import KINETIC_CAD, RULE_SCORER, KineticScorer

__all__ = [
    "KINETIC_CAD",
    "MRI_OUTPUT_KINDS",
    "RULE_SCORER",
    "DceExam",
    "IgnoredSeries",
    "KineticResult",
    "KineticScorer",
    "KineticSettings",
    "LesionCandidate",
    "analyse",
    "assemble_dce",
    "build_kinetic_outputs",
    "kinetic_outputs",
]


def kinetic_outputs(
    datasets: Iterable[Dataset],
    settings: KineticSettings | None = None,
    *,
    scorer: KineticScorer = RULE_SCORER,
    languages: Sequence[str] = ("en",),
    summary: bool = True,
) -> tuple[KineticResult, list[Dataset]]:
    """Assemble, analyse and write one MR study, every kind of :data:`MRI_OUTPUT_KINDS` in
    its order (the summaries only when ``summary``).

    Returns (result, [SEG, SR, *colour map images, *summary SCs, *summary PDFs]), one summary
    of each kind per language.
    ``scorer`` scores the candidates (the rule by default; node/mri/scoring.py), ``languages``
    are the summaries' (en, ru, kk). Raises InvalidInput (a FinalError) for a study that holds
    no usable DCE series, ValueError for an unknown language.
    """
    exam = assemble_dce(datasets)
    result = analyse(exam, settings)
    if scorer is not RULE_SCORER:
        result = rescored(result, scorer)
    kinds = [k for k in MRI_OUTPUT_KINDS if summary or not k.startswith("summary_")]
    options = MriOutputOptions(scorer, tuple(languages))
    built = build_kinetic_outputs(exam, result, kinds, options)
    return result, [output.dataset for output in built]
