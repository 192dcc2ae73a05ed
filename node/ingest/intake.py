"""Turn a stable Orthanc study into an exam job (idempotently), recording every decision.

The same study seen twice (pushed by the plugin and found again in /changes, or re-sent
by a modality) has the same routed instances and so the same idempotency key: one job.

Exam assembly: an exam is complete when every expected view ("R CC", "L CC", "R MLO",
"L MLO" by default) is among its routed images. An incomplete exam's job waits (it is not
leased) until ``assembly_timeout`` after the study first became stable; images that arrive
meanwhile join that same job. At the timeout the worker scores what arrived and marks the
exam incomplete. Images that arrive after a job has started make a new job, the next
*revision* of the exam's results (node.jobs.revisions): never a second silent result.

Which images make one exam (one study, or a woman's studies of one accession / day) is
``exam_grouping``'s decision, made in node.ingest.grouping; assembly is the same for both.
A study's routed breast MRI series (node.ingest.routing.route_mr) make a job of their own,
for the kinetic CAD (model ``mri-kinetics/<version>``): the whole DCE study at once (always
one study, whatever the grouping), queued when the study is stable (no views to wait for).

An exam need not wait for Orthanc's StableAge when it has nothing to wait for: told that a
study grew (a new instance), intake queues it at once if its routed images already hold every
expected view, and otherwise leaves it to the stable study.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from node.config import DEFAULT_EXPECTED_VIEWS, RoutingRules
from node.dicom.views import missing_views, normalise, tags_getter
from node.domain import ExamRequest
from node.events import EventBus, SeriesRouted
from node.ingest.grouping import Exam, ExamGrouping
from node.ingest.routing import RoutingDecision, route
from node.jobs.mri_stages import MRI_MODEL_REF
from node.jobs.revisions import revision_of
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore
from node.net.orthanc_rest import InstanceTags
from node.writers.provenance import NODE_MANUFACTURER

MAX_JOBS_PER_STUDY = 1000  # bounded look-up of an exam's earlier jobs

log = logging.getLogger(__name__)


def idempotency_key(study_instance_uid: str, model_ref: str, sop_instance_uids: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (study_instance_uid, model_ref, *sorted(sop_instance_uids)):
        digest.update(part.encode("ascii") + b"\x00")
    return digest.hexdigest()[:40]


class StudySource(Protocol):
    """What intake reads of the archive (OrthancRest in the node)."""

    def study_instances(self, study_id: str, *, except_manufacturer: str = "") -> list[str]:
        """The archive's ids of the study's instances, without the series of
        ``except_manufacturer``; NotFound when the study is gone."""
        ...

    def instance_tags(self, instance_id: str) -> InstanceTags: ...


class ExamIntake:
    def __init__(
        self,
        orthanc: StudySource,
        store: JobStore,
        bus: EventBus,
        rules: RoutingRules,
        model_ref: str,
        max_attempts: int,
        expected_views: tuple[str, ...] = DEFAULT_EXPECTED_VIEWS,
        assembly_timeout: float = 0.0,
        clock: Callable[[], float] = time.time,
        grouping: str = "study",
    ) -> None:
        self.orthanc = orthanc
        self.store = store
        self.bus = bus
        self.rules = rules
        self.model_ref = model_ref
        self.max_attempts = max_attempts
        self.expected_views = expected_views
        self.assembly_timeout = assembly_timeout
        self.clock = clock
        self.grouping = ExamGrouping(store, grouping)
        # One exam at a time: two studies of one exam arriving together join one job.
        self._assembling = threading.Lock()

    def stable_study(self, orthanc_study_id: str, *, only_complete: bool = False) -> Job | None:
        """Route every instance of the study; queue a job when any is routed (a study with
        both mammograms and breast MRI gets one job of each; the mammography one is returned).

        ``only_complete``: the study is not stable yet (an instance just arrived), so do
        nothing, not even record the routing, unless its routed images hold every expected
        view: such an exam has nothing to wait for.

        Raises NotFound when the study is no longer in Orthanc (nothing to do).
        """
        # The node's own results are never routed (route: "own_output"): a stable study's are
        # left out unread. An exam still arriving has none yet: no series look-up for it.
        own = "" if only_complete else NODE_MANUFACTURER
        ids = self.orthanc.study_instances(orthanc_study_id, except_manufacturer=own)
        instances = [self.orthanc.instance_tags(i) for i in ids]
        by_series: dict[tuple[str, RoutingDecision], list[InstanceTags]] = defaultdict(list)
        for tags in instances:
            by_series[(tags.SeriesInstanceUID, route(tags, self.rules))].append(tags)
        if only_complete and not self._every_view(by_series):
            return None

        routed: list[InstanceTags] = []
        for (series_uid, decision), members in by_series.items():
            if decision.code == "own_output":
                continue
            if decision.routed:
                routed += members
            new = self.store.record_routing(
                # An invalid UID is recorded as far as a UID column holds (64, PS3.5 9.1).
                study_instance_uid=members[0].StudyInstanceUID[:64],
                series_instance_uid=series_uid[:64],
                decision=decision.decision,
                reason=decision.reason,
                instances=len(members),
            )
            if new:
                self.bus.emit(SeriesRouted(decision.decision, decision.code, len(members)))
                log.info(
                    "series %s: %s",
                    decision.decision,
                    decision.reason,
                    extra={"orthanc_study": orthanc_study_id, "instances": len(members)},
                )
        mr = [t for t in routed if t.Modality == "MR"]
        routed = [t for t in routed if t.Modality != "MR"]
        with self._assembling:
            mr_exam = self.grouping.study_exam(mr) if mr else None
            mr_job = self._queue(orthanc_study_id, mr_exam, MRI_MODEL_REF) if mr_exam else None
            if not routed:
                return mr_job
            return self._queue(orthanc_study_id, self.grouping.exam(routed), self.model_ref)

    def _queue(self, orthanc_study_id: str, exam: Exam, model_ref: str) -> Job:
        """The job of ``exam`` for ``model_ref``: the existing one for the same images, else new.
        Called under the assembly lock."""
        refs = [ref.SOPInstanceUID for ref in exam.instances]
        key = idempotency_key(exam.key, model_ref, refs)
        existing = self.store.find_by_key(key)
        if existing is not None:
            return existing  # the same images again: nothing new to analyse
        return self._assemble(orthanc_study_id, exam, key, model_ref)

    def _every_view(self, by_series: dict[tuple[str, RoutingDecision], list[InstanceTags]]) -> bool:
        """True when the routed images hold every expected view ("R CC", ...)."""
        labels = {
            normalise(tags_getter(tags.header)).label
            for (_, decision), members in by_series.items()
            if decision.routed
            for tags in members
        }
        return bool(labels) and not missing_views(sorted(labels), self.expected_views)

    def _assemble(self, orthanc_study_id: str, exam: Exam, key: str, model_ref: str) -> Job:
        """Queue the exam, join a job still waiting for views, or start the next revision."""
        now = self.clock()
        mr = model_ref == MRI_MODEL_REF  # a DCE study has no views to wait for
        study_uid = exam.study_instance_uid
        labels = () if mr else exam.views
        missing = [] if mr else missing_views(labels, self.expected_views)
        earlier = [
            job
            for job in self.store.list_jobs(study_instance_uid=study_uid, limit=MAX_JOBS_PER_STUDY)
            if job.model_ref == model_ref
        ]
        first_seen = min((job.created_at for job in earlier), default=now)
        not_before = max(now, first_seen + self.assembly_timeout) if missing else now
        request = ExamRequest(
            orthanc_study_id=orthanc_study_id,
            instances=exam.instances,
            views=tuple(labels),
            missing_views=tuple(missing),
            modality="MR" if mr else "MG",
        )
        waiting = [j for j in earlier if j.state is JobState.QUEUED and j.attempts == 0]
        for job in sorted(waiting, key=lambda j: j.id, reverse=True)[:1]:
            reason = f"exam grew to {len(exam.instances)} images" + (
                f"; still missing {', '.join(missing)}" if missing else "; all views present"
            )
            regrouped = self.store.regroup_queued(
                job,
                idempotency_key=key,
                payload=replace(request, revision=revision_of(job)).to_json(),
                not_before=not_before,
                reason=reason,
            )
            if regrouped is not None:
                log.info(
                    "exam job regrouped", extra={"job_id": job.id, "instances": len(exam.instances)}
                )
                return regrouped
        revision = max((revision_of(j) + 1 for j in earlier), default=0)
        job, created = self.store.create_job(
            idempotency_key=key,
            study_instance_uid=study_uid,
            model_ref=model_ref,
            payload=replace(request, revision=revision).to_json(),
            max_attempts=self.max_attempts,
            not_before=not_before,
            seen_at=now,
        )
        if created:
            log.info(
                "exam job queued",
                extra={
                    "job_id": job.id,
                    "instances": len(exam.instances),
                    "grouped_by": exam.grouped_by,
                    "revision": revision,
                    "missing_views": len(missing),
                    "wait_seconds": round(not_before - now, 1),
                },
            )
        return job
