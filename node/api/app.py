"""The node's HTTP API: one app, its routers, one exception→status table.

Health and Prometheus metrics are open; every /api/v1 route (the plugin's change notifications,
jobs, routing, deliveries, models, feedback) needs the plugin's token or the admin's basic
credentials. Orthanc's own API stays behind its basic auth. Routes raise the node's exceptions;
``node.api.errors`` answers them.

No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.
"""

import secrets
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from node.api.deliveries import delivery_router
from node.api.errors import add_error_handlers
from node.api.jobs import JobServices, jobs_router
from node.api.review import ReviewServices, review_router


class NodeServices(JobServices, ReviewServices, Protocol):
    """What the API needs of the running node (the composition root provides it)."""

    registry: CollectorRegistry
    api_token: str
    admin_credentials: tuple[str, str]

    def health(self) -> dict[str, Any]: ...


def create_api(node: NodeServices) -> FastAPI:
    app = FastAPI(
        title="mammo-node",
        summary="AI results for screening mammography, written back to PACS. Not for clinical use.",
        version="0.1.0",
    )
    add_error_handlers(app)
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

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, Any]:
        report = node.health()
        if not report["ok"]:
            response.status_code = 503
        return report

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(node.registry), media_type=CONTENT_TYPE_LATEST)

    auth = [Depends(authorised)]
    app.include_router(jobs_router(node), dependencies=auth)  # changes, jobs, routing
    app.include_router(review_router(node), dependencies=auth)  # models, feedback
    app.include_router(delivery_router(node), dependencies=auth)  # deliveries, resend
    return app
