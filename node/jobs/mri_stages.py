"""The breast DCE-MRI branch of an exam job: the kinetic CAD instead of a mammography model.

Fetching and publishing are the same as for mammography (the pipeline's own stages, with
the same outbox, destinations, idempotency and retries); what differs is here: the
analysis (node.mri: phase assembly, kinetics), the output kinds (node.mri.outputs) and the
job result, which names the kinetic CAD's version as its model (``mri-kinetics/<version>``)
and lists the lesion candidates.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydicom.dataset import Dataset

from node.domain import (
    ExamSummary,
    IgnoredSeriesSummary,
    Laterality,
    MriLesionSummary,
    MriSummary,
    OutputSummary,
    SkippedImage,
)
from node.mri import KINETIC_CAD, DceExam, KineticResult, analyse, assemble_dce
from node.mri.outputs import MRI_OUTPUT_KINDS, MriOutputOptions, build_kinetic_outputs
from node.writers.outputs import BuiltOutputs, Output

__all__ = ["MRI_MODEL_REF", "MriAnalysis", "analyse_study", "build_study_outputs", "mri_summary"]

#: What MR jobs and their results name as their model (the kinetic CAD, like a model ref).
MRI_MODEL_REF = KINETIC_CAD.ref


@dataclass(frozen=True)
class MriAnalysis:
    """One study's DCE time series and its kinetic analysis."""

    exam: DceExam
    result: KineticResult


def analyse_study(sources: Sequence[Dataset], revision: int = 0) -> MriAnalysis:
    """Assemble and analyse; InvalidInput (final) for a study without a usable DCE series.
    A revision (late images) gets output UIDs of its own, as mammography's do."""
    exam = replace(assemble_dce(sources), revision=revision)
    return MriAnalysis(exam, analyse(exam))


def build_study_outputs(
    analysis: MriAnalysis, wanted: Collection[str], language: str = "en"
) -> BuiltOutputs:
    """The MR output kinds some destination wants (mammography-only kinds are skipped), the
    summaries in the node's summary language."""
    kinds = [kind for kind in MRI_OUTPUT_KINDS if kind in wanted]
    options = MriOutputOptions(languages=(language,))
    return build_kinetic_outputs(analysis.exam, analysis.result, kinds, options)


def _sides(lesions: Sequence[MriLesionSummary]) -> dict[Laterality, float | None]:
    """Per breast, the highest candidate score; 0.0 when none (both breasts are imaged)."""
    return {
        side: max((c.score for c in lesions if c.laterality == side), default=0.0)
        for side in ("L", "R")
    }


def mri_summary(
    analysis: MriAnalysis,
    *,
    skipped: Sequence[SkippedImage],
    outputs: Sequence[Output],
    published: Mapping[str, int],
    deliveries: Sequence[Mapping[str, Any]],
    revision: int,
    output_failures: Mapping[str, str],
) -> ExamSummary:
    """The job result of an MR exam: the common fields (score: the highest candidate score,
    recall at the CAD's operating point), and the MR part (phases, motion, candidates)."""
    result = analysis.result
    lesions = tuple(
        MriLesionSummary(
            number=c.number,
            laterality=c.laterality,
            quadrant=c.quadrant,
            curve=c.curve,
            volume_mm3=round(c.volume_mm3, 1),
            max_enhancement_percent=round(c.max_enhancement_percent, 1),
            ser=round(c.mean_ser, 3),
            score=round(c.score, 4),
        )
        for c in result.candidates
    )
    score = max((lesion.score for lesion in lesions), default=0.0)
    return ExamSummary(
        model=MRI_MODEL_REF,
        score=score,
        recall=score >= KINETIC_CAD.operating_point,
        breasts=_sides(lesions),
        images=(),
        skipped=tuple(skipped),
        outputs=tuple(
            OutputSummary(
                kind=o.kind,
                SOPInstanceUID=o.dataset.SOPInstanceUID,
                SOPClassUID=o.dataset.SOPClassUID,
                SeriesInstanceUID=o.dataset.SeriesInstanceUID,
                Modality=o.dataset.Modality,
            )
            for o in outputs
        ),
        published=published,
        revision=revision,
        deliveries=tuple(deliveries),
        output_failures=output_failures,
        mri=MriSummary(
            phases=len(analysis.exam.phases),
            slices=len(analysis.exam.pre.slices),
            motion_mm=round(result.motion.magnitude_mm, 2),
            motion_flagged=result.motion.flagged,
            lesions=lesions,
            ignored_series=tuple(
                IgnoredSeriesSummary(i.SeriesInstanceUID, i.reason) for i in analysis.exam.ignored
            ),
        ),
    )
