"""Revisions of an exam's results: never two silent, contradictory results in PACS.

When images arrive after the results of an exam were sent, the exam is analysed again as
revision n + 1 (a new job, see node.ingest.intake). Its outputs get new UIDs (the revision is
part of them, node.writers.provenance.output_uid) and each SR names the SR of the same kind
it replaces in Predecessor Documents Sequence (0040,A360) (PS3.3 C.17.2.3, a Hierarchical
SOP Instance Reference, C.17.2.1), so a reader can tell which report is current.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from node.domain import ExamRequest, ExamSummary, OutputSummary
from node.jobs.states import JobState
from node.jobs.store import Job
from node.writers.outputs import Output


def revision_of(job: Job) -> int:
    return ExamRequest.from_json(job.payload).revision


@dataclass(frozen=True)
class Predecessor:
    """An SR of an earlier revision, and the study it is in."""

    StudyInstanceUID: str
    output: OutputSummary


def predecessor_outputs(jobs: Sequence[Job], model_ref: str, revision: int) -> list[Predecessor]:
    """The SR outputs of the newest done revision before ``revision`` (same model)."""
    earlier = [
        job
        for job in jobs
        if job.model_ref == model_ref
        and job.state is JobState.DONE
        and revision_of(job) < revision
        and job.result is not None
    ]
    if not earlier:
        return []
    newest = max(earlier, key=lambda job: (revision_of(job), job.id))
    assert newest.result is not None
    return [
        Predecessor(newest.study_instance_uid, output)
        for output in ExamSummary.from_json(newest.result).outputs
        if output.Modality == "SR" and output.SeriesInstanceUID
    ]


def _reference(previous: Predecessor) -> Dataset:
    sop = Dataset()
    sop.ReferencedSOPClassUID = previous.output.SOPClassUID
    sop.ReferencedSOPInstanceUID = previous.output.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = previous.output.SeriesInstanceUID
    series.ReferencedSOPSequence = [sop]
    study = Dataset()
    study.StudyInstanceUID = previous.StudyInstanceUID
    study.ReferencedSeriesSequence = [series]
    return study


def add_predecessors(outputs: Sequence[Output], predecessors: Sequence[Predecessor]) -> int:
    """Point each SR output at the earlier SR of the same kind; return how many were linked."""
    linked = 0
    for output in outputs:
        if output.dataset.Modality != "SR":
            continue
        earlier = [p for p in predecessors if p.output.kind == output.kind]
        if earlier:
            output.dataset.PredecessorDocumentsSequence = [_reference(p) for p in earlier]
            linked += 1
    return linked
