"""The node's HTTP API: one app, its routers, one exception→status table.

Health and Prometheus metrics are open; every /api/v1 route (the plugin's change notifications,
jobs, routing, deliveries, models, feedback) needs the plugin's token or a console user's basic
credentials, with the role its method needs (``node.api.auth``), and so do the API's own
description (/openapi.json) and its page (/docs): they map every route for a caller. Orthanc's
own API stays behind its basic auth. Routes raise the node's exceptions; ``node.api.errors``
answers them.

No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.
"""

from typing import Any, Protocol

from fastapi import Depends, FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from node.api.auth import authenticator
from node.api.console import ConsoleServices, console_router
from node.api.deliveries import delivery_router
from node.api.errors import add_error_handlers
from node.api.jobs import JobServices, jobs_router
from node.api.review import ReviewServices, review_router
from node.config import ConsoleUser


class NodeServices(ConsoleServices, JobServices, ReviewServices, Protocol):
    """What the API needs of the running node (the composition root provides it)."""

    registry: CollectorRegistry
    api_token: str
    console_users: tuple[ConsoleUser, ...]

    def health(self) -> dict[str, Any]: ...


def create_api(node: NodeServices) -> FastAPI:
    app = FastAPI(
        title="mammo-node",
        summary="AI results for screening mammography, written back to PACS. Not for clinical use.",
        version="0.1.0",
        docs_url=None,  # served below, behind authentication
        redoc_url=None,
        openapi_url=None,
    )
    add_error_handlers(app)
    authenticated = authenticator(node.api_token, node.console_users)

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, Any]:
        report = node.health()
        if not report["ok"]:
            response.status_code = 503
        return report

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(node.registry), media_type=CONTENT_TYPE_LATEST)

    auth = [Depends(authenticated)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=auth)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=auth)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="mammo-node API")

    app.include_router(jobs_router(node), dependencies=auth)  # changes, jobs, routing
    app.include_router(review_router(node), dependencies=auth)  # models, feedback
    app.include_router(delivery_router(node), dependencies=auth)  # deliveries, resend
    app.include_router(console_router(node, authenticated))  # the admin console at /
    return app
