"""Job routes of the node's API: the plugin's change notifications, job and routing records.

Errors map to HTTP status by ``node.api.errors``.
No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.
"""

from dataclasses import asdict
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, BackgroundTasks, Query
from pydantic import BaseModel

from node.api.deliveries import DeliveryServices, job_deliveries
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore


class JobServices(DeliveryServices, Protocol):
    """What these routes need of the running node."""

    store: JobStore

    def stable_study(self, orthanc_study_id: str) -> None: ...

    def study_grew(self, orthanc_study_id: str) -> None: ...


class OrthancChange(BaseModel):
    ChangeType: str
    ResourceType: str
    ID: str


def job_view(job: Job) -> dict[str, Any]:
    view = asdict(job)
    view["state"] = job.state.value
    view.pop("lease_owner", None)
    return view


def jobs_router(node: JobServices) -> APIRouter:
    """/api/v1/orthanc/changes, /api/v1/jobs (list, one, re-queue) and /api/v1/routing."""
    router = APIRouter()

    @router.post("/api/v1/orthanc/changes", status_code=202)
    def orthanc_change(change: OrthancChange, background: BackgroundTasks) -> dict[str, str]:
        if change.ResourceType != "Study":
            return {"status": "ignored"}
        if change.ChangeType == "StableStudy":
            background.add_task(node.stable_study, change.ID)
        elif change.ChangeType == "NewInstance":  # the study grew: complete exams start now
            background.add_task(node.study_grew, change.ID)
        else:
            return {"status": "ignored"}
        return {"status": "accepted"}

    @router.get("/api/v1/jobs")
    def list_jobs(
        state: JobState | None = None,
        study: Annotated[str | None, Query(alias="StudyInstanceUID")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        return [
            job_view(j)
            for j in node.store.list_jobs(state=state, study_instance_uid=study, limit=limit)
        ]

    @router.get("/api/v1/jobs/{job_id}")
    def get_job(job_id: int) -> dict[str, Any]:
        job = node.store.get(job_id)
        view = job_view(job)
        view["history"] = [asdict(e) for e in node.store.history(job_id)]
        view.update(job_deliveries(node, job_id))  # per destination: delivered, dead_letter...
        return view

    @router.post("/api/v1/jobs/{job_id}/requeue")
    def requeue(job_id: int) -> dict[str, Any]:
        job = node.store.requeue(job_id)
        return job_view(job)

    @router.get("/api/v1/routing")
    def routing(
        study: Annotated[str | None, Query(alias="StudyInstanceUID")] = None,
    ) -> list[dict[str, Any]]:
        return node.store.routing_decisions(study)

    return router
