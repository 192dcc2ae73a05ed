"""Turn a stable Orthanc study into an exam job (idempotently), recording every decision.

The same study seen twice (pushed by the plugin and found again in /changes, or re-sent
by a modality) has the same routed instances and so the same idempotency key: one job.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict

from node.config import RoutingRules
from node.events import EventBus, SeriesRouted
from node.ingest.routing import RoutingDecision, route
from node.jobs.store import Job, JobStore
from node.net.orthanc_rest import InstanceTags, OrthancRest

log = logging.getLogger(__name__)


def idempotency_key(study_instance_uid: str, model_ref: str, sop_instance_uids: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (study_instance_uid, model_ref, *sorted(sop_instance_uids)):
        digest.update(part.encode("ascii") + b"\x00")
    return digest.hexdigest()[:40]


class ExamIntake:
    def __init__(
        self,
        orthanc: OrthancRest,
        store: JobStore,
        bus: EventBus,
        rules: RoutingRules,
        model_ref: str,
        max_attempts: int,
    ) -> None:
        self.orthanc = orthanc
        self.store = store
        self.bus = bus
        self.rules = rules
        self.model_ref = model_ref
        self.max_attempts = max_attempts

    def stable_study(self, orthanc_study_id: str) -> Job | None:
        """Route every instance of the study; queue a job when any is routed.

        Raises KeyError when the study is no longer in Orthanc (nothing to do).
        """
        instances = [
            self.orthanc.instance_tags(i) for i in self.orthanc.study_instances(orthanc_study_id)
        ]
        by_series: dict[tuple[str, RoutingDecision], list[InstanceTags]] = defaultdict(list)
        for tags in instances:
            by_series[(tags.SeriesInstanceUID, route(tags, self.rules))].append(tags)

        routed: list[InstanceTags] = []
        for (series_uid, decision), members in by_series.items():
            if decision.code == "own_output":
                continue
            if decision.routed:
                routed += members
            new = self.store.record_routing(
                study_instance_uid=members[0].StudyInstanceUID,
                series_instance_uid=series_uid,
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
        if not routed:
            return None
        study_uid = routed[0].StudyInstanceUID
        key = idempotency_key(study_uid, self.model_ref, [t.SOPInstanceUID for t in routed])
        payload = {
            "orthanc_study_id": orthanc_study_id,
            "instances": [
                {
                    "StudyInstanceUID": t.StudyInstanceUID,
                    "SeriesInstanceUID": t.SeriesInstanceUID,
                    "SOPInstanceUID": t.SOPInstanceUID,
                }
                for t in sorted(routed, key=lambda t: (t.SeriesInstanceUID, t.SOPInstanceUID))
            ],
        }
        job, created = self.store.create_job(
            idempotency_key=key,
            study_instance_uid=study_uid,
            model_ref=self.model_ref,
            payload=payload,
            max_attempts=self.max_attempts,
        )
        if created:
            log.info("exam job queued", extra={"job_id": job.id, "instances": len(routed)})
        return job
