"""Which exam a stable study belongs to, as a mammographer groups images (``exam_grouping``).

``study`` (the default): one exam per Study Instance UID, the one identity every modality
guarantees. ``patient``: the woman's studies of one Accession Number (0008,0050), else of one
Study Date (0008,0020), joined into one exam. Some sites and archives send one study per view
(the CBIS-DDSM images carry a Study Instance UID, and even a Patient ID, per view); study
grouping then makes four single-view exams, each with three views "not available".

The patient is read by ``node.dicom.views.identity`` (so ``Mass-Test_P_00173_LEFT_CC`` is the
woman ``P_00173``, as in ``data import``), scoped by Issuer of Patient ID (0010,0021). An image
without a Patient ID, or without both Accession Number and Study Date, stays its own study's
exam: joining on less would risk two women's images in one result.

Where the results go: an exam of several studies writes its exam-level objects (TID 1500 SR,
Mammography CAD SR, summary SC and PDF) into ONE of them, the exam's *results study*: the
study that reached the node first. It is recorded (``node_state``, first writer wins) so that
later studies, retries and revisions of the exam all keep it; the jobs of the exam are stored
under it (``jobs.study_instance_uid``), which is how the next study finds them. Per-image
objects (SEG, GSPS, heatmaps) stay in their image's study: highdicom refuses a SEG or GSPS
whose images are in another study, and viewers apply them only to the study they load.

An exam that grows: the new study's images join the images of the exam's earlier jobs, so the
idempotency key (which covers the whole instance set) is new; a job still waiting for its
views is regrouped to the whole set, and a started or finished one is followed by the next
revision with every view (node.jobs.revisions). The same study seen again gives the same set:
the same job. Identifiers are hashed: no Patient ID or accession reaches the job store or logs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from node.config import EXAM_GROUPINGS
from node.dicom.views import identity, normalise, tags_getter
from node.domain import ExamRequest, InstanceRef
from node.jobs.store import JobStore
from node.net.orthanc_rest import InstanceTags

__all__ = ["MAX_JOBS_PER_EXAM", "Exam", "ExamGrouping", "exam_key"]

MAX_JOBS_PER_EXAM: Final = 1000  # bounded look-up of an exam's earlier jobs
_RESULTS_STUDY: Final = "exam results study "  # node_state key prefix, then the exam key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exam:
    """The exam a stable study belongs to, with every routed image it has so far."""

    key: str  # the exam part of the idempotency key: the Study Instance UID, or "exam <hash>"
    study_instance_uid: str  # the results study (jobs.study_instance_uid)
    instances: tuple[InstanceRef, ...]  # sorted by (series, instance), as the payload keeps them
    views: tuple[str, ...]  # view labels present ("L CC", ...), sorted
    grouped_by: str  # "study", "accession" or "study date" (for the log)


def exam_key(tags: InstanceTags) -> tuple[str, str] | None:
    """("exam <hash>", what joined it) for patient grouping; None when the header has too
    little to join on safely (no Patient ID, or neither Accession Number nor Study Date)."""
    header = tags.header
    patient = identity(tags_getter(header)).patient_id
    if not patient:
        return None
    accession = str(header.get("AccessionNumber") or "").strip()
    date = str(header.get("StudyDate") or "").strip()
    if accession:
        grouped_by, value = "accession", accession
    elif date:
        grouped_by, value = "study date", date
    else:
        return None
    issuer = str(header.get("IssuerOfPatientID") or "").strip()
    digest = hashlib.sha256()
    for part in (issuer, patient, grouped_by, value):
        digest.update(part.encode("utf-8", "replace") + b"\x00")
    return f"exam {digest.hexdigest()[:40]}", grouped_by


def _refs(routed: Sequence[InstanceTags]) -> list[InstanceRef]:
    return [InstanceRef(t.StudyInstanceUID, t.SeriesInstanceUID, t.SOPInstanceUID) for t in routed]


def _sorted(refs: Sequence[InstanceRef]) -> tuple[InstanceRef, ...]:
    return tuple(sorted(refs, key=lambda r: (r.SeriesInstanceUID, r.SOPInstanceUID)))


class ExamGrouping:
    """Turns the routed images of one stable study into their exam (see the module docstring).

    Not thread-safe on its own: intake calls it under its assembly lock, so two studies of one
    exam arriving together are joined one after the other, never into two jobs.
    """

    def __init__(self, store: JobStore, grouping: str = "study") -> None:
        if grouping not in EXAM_GROUPINGS:
            raise ValueError(f"exam grouping {grouping!r} is not one of {EXAM_GROUPINGS}")
        self.store = store
        self.grouping = grouping

    @staticmethod
    def study_exam(routed: Sequence[InstanceTags], views: tuple[str, ...] = ()) -> Exam:
        """The study's own images as one exam, whatever the grouping (a breast MRI study is
        one exam: its series are the phases of one acquisition, not views to join)."""
        if not routed:
            raise ValueError("an exam needs at least one routed image")
        study_uid = routed[0].StudyInstanceUID
        return Exam(study_uid, study_uid, _sorted(_refs(routed)), views, "study")

    def exam(self, routed: Sequence[InstanceTags]) -> Exam:
        """The exam of ``routed`` (the routed images of one study, at least one)."""
        if not routed:
            raise ValueError("an exam needs at least one routed image")
        labels = {normalise(tags_getter(t.header)).label for t in routed}
        alone = self.study_exam(routed, tuple(sorted(labels)))
        if self.grouping == "study":
            return alone
        keys = {exam_key(t) for t in routed}
        found = keys.pop() if len(keys) == 1 else None
        if found is None:
            log.info(
                "study kept as its own exam: its images give no single patient and "
                "accession or study date",
                extra={"instances": len(routed)},
            )
            return alone
        key, grouped_by = found
        results_study = self.store.claim_state(
            _RESULTS_STUDY + key[len("exam ") :], alone.study_instance_uid
        )
        refs = {ref.SOPInstanceUID: ref for ref in _refs(routed)}
        earlier = self.store.list_jobs(study_instance_uid=results_study, limit=MAX_JOBS_PER_EXAM)
        for job in earlier:  # every model's: the images of an exam do not depend on the model
            try:
                request = ExamRequest.from_json(job.payload)
            except ValueError:
                continue  # an unreadable payload: its job fails on its own; skip its images
            for ref in request.instances:
                refs.setdefault(ref.SOPInstanceUID, ref)
            labels.update(request.views)
        if earlier:
            log.info(
                "study joined its exam",
                extra={"grouped_by": grouped_by, "instances": len(refs), "jobs": len(earlier)},
            )
        return Exam(
            key, results_study, _sorted(list(refs.values())), tuple(sorted(labels)), grouped_by
        )
