"""The node's HTTP API: the plugin's change notifications, job and routing records for
admins, health and Prometheus metrics. Orthanc's own API stays behind its basic auth.

No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.
"""

import logging
import secrets
from dataclasses import asdict
from typing import Annotated, Any, Protocol

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Query, Response
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel

from node.api.deliveries import DeliveryServices, add_delivery_routes, job_deliveries
from node.api.review import ReviewServices, add_review_routes
from node.errors import Conflict, InvalidTransition, MammoNodeError, NotFound
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore

log = logging.getLogger(__name__)


class NodeServices(ReviewServices, DeliveryServices, Protocol):
    """What the API needs of the running node (the composition root provides it)."""

    store: JobStore
    registry: CollectorRegistry
    api_token: str
    admin_credentials: tuple[str, str]

    def health(self) -> dict[str, Any]: ...

    def stable_study(self, orthanc_study_id: str) -> None: ...


class OrthancChange(BaseModel):
    ChangeType: str
    ResourceType: str
    ID: str


def job_view(job: Job) -> dict[str, Any]:
    view = asdict(job)
    view["state"] = job.state.value
    view.pop("lease_owner", None)
    return view


def create_api(node: NodeServices) -> FastAPI:
    app = FastAPI(
        title="mammo-node",
        summary="AI results for screening mammography, written back to PACS. Not for clinical use.",
        version="0.1.0",
    )
    bearer = HTTPBearer(auto_error=False)
    basic = HTTPBasic(auto_error=False)

    def authorised(
        token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)],
    ) -> None:
        if token is not None and secrets.compare_digest(token.credentials, node.api_token):
            return
        if credentials is not None:
            user, password = node.admin_credentials
            if secrets.compare_digest(credentials.username, user) and secrets.compare_digest(
                credentials.password, password
            ):
                return
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Basic"})

    Auth = Depends(authorised)

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, Any]:
        report = node.health()
        if not report["ok"]:
            response.status_code = 503
        return report

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(node.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/v1/orthanc/changes", status_code=202, dependencies=[Auth])
    def orthanc_change(change: OrthancChange, background: BackgroundTasks) -> dict[str, str]:
        if change.ChangeType != "StableStudy":
            return {"status": "ignored"}
        background.add_task(node.stable_study, change.ID)
        return {"status": "accepted"}

    @app.get("/api/v1/jobs", dependencies=[Auth])
    def list_jobs(
        state: JobState | None = None,
        study: Annotated[str | None, Query(alias="StudyInstanceUID")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        return [
            job_view(j)
            for j in node.store.list_jobs(state=state, study_instance_uid=study, limit=limit)
        ]

    @app.get("/api/v1/jobs/{job_id}", dependencies=[Auth])
    def get_job(job_id: int) -> dict[str, Any]:
        try:
            job = node.store.get(job_id)
        except NotFound as error:
            raise HTTPException(404, f"no job {job_id}") from error
        view = job_view(job)
        view["history"] = [asdict(e) for e in node.store.history(job_id)]
        view.update(job_deliveries(node, job_id))  # per destination: delivered, dead_letter...
        return view

    @app.post("/api/v1/jobs/{job_id}/requeue", dependencies=[Auth])
    def requeue(job_id: int) -> dict[str, Any]:
        try:
            return job_view(node.store.requeue(job_id))
        except NotFound as error:
            raise HTTPException(404, f"no job {job_id}") from error
        except (InvalidTransition, Conflict) as error:
            raise HTTPException(409, str(error)) from error

    @app.get("/api/v1/routing", dependencies=[Auth])
    def routing(
        study: Annotated[str | None, Query(alias="StudyInstanceUID")] = None,
    ) -> list[dict[str, Any]]:
        return node.store.routing_decisions(study)

    @app.exception_handler(MammoNodeError)
    def node_error(_request: Any, error: MammoNodeError) -> Response:
        log.warning("request failed: %s", error)
        return Response(status_code=503, content=str(error))

    add_review_routes(app, node, Auth)  # /api/v1/models, /api/v1/feedback
    add_delivery_routes(app, node, Auth)  # /api/v1/deliveries, resend of a dead letter
    return app
