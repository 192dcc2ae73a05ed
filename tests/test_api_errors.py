"""The API's one exception→status table: the most specific class wins, every answer has
FastAPI's ``{"detail": ...}`` shape."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from node.api.errors import add_error_handlers, status_for
from node.errors import (
    Conflict,
    FinalError,
    InvalidFeedback,
    InvalidRegistryFile,
    InvalidTransition,
    JobNotReviewable,
    LeaseLost,
    MammoNodeError,
    NotFound,
    PeerUnavailable,
    PromotionRefused,
)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFound("no job 7"), 404),
        (Conflict("running"), 409),
        (LeaseLost("taken over"), 409),
        (InvalidTransition("dead_letter -> delivered"), 409),
        (JobNotReviewable("no result yet"), 409),  # before its base InvalidFeedback
        (InvalidFeedback("finding 9 does not exist"), 422),
        (PromotionRefused("worse"), 409),
        (InvalidRegistryFile("registry.yaml: live missing"), 500),
        (FinalError("the outbox is gone"), 409),
        (PeerUnavailable("Orthanc: ConnectError"), 503),
        (MammoNodeError("unclassified"), 500),
    ],
)
def test_each_class_has_one_status(error: MammoNodeError, status: int) -> None:
    assert status_for(error) == status


def test_a_route_raising_gets_the_status_and_the_message() -> None:
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/thing")
    def thing() -> None:
        raise NotFound("no thing 3")

    response = TestClient(app).get("/thing")
    assert response.status_code == 404
    assert response.json() == {"detail": "no thing 3"}
