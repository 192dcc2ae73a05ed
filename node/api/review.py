"""API routes for model versions (live, shadow, agreement) and radiologists' feedback.

Included in the node's API by ``create_api``, behind the same authentication as every /api/v1
route; errors map to HTTP status by ``node.api.errors``.
No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.
"""

import logging
from dataclasses import asdict
from typing import Any, Literal, Protocol

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from node.models.lifecycle import ModelLifecycle
from node.review.feedback import Feedback, FeedbackStore
from node.review.shadow import ShadowStore

log = logging.getLogger(__name__)


class ReviewServices(Protocol):
    """What these routes need of the running node."""

    feedback: FeedbackStore
    shadow_results: ShadowStore
    lifecycle: ModelLifecycle

    @property
    def running_models(self) -> dict[str, str | None]: ...


class FeedbackIn(BaseModel):
    """A radiologist's verdict on one job's result (the exam, or one finding of it)."""

    model_config = ConfigDict(extra="forbid")

    job_id: int = Field(ge=1)
    agree: bool
    finding: int = Field(0, ge=0, description="0: the exam; N: finding N in image order")
    birads: int | None = Field(None, ge=0, le=6, description="final BI-RADS assessment")
    pathology: Literal["benign", "malignant", "none"] | None = None
    satisfaction: int | None = Field(None, ge=1, le=5)
    comment: str | None = Field(None, max_length=2000)


def review_router(node: ReviewServices) -> APIRouter:
    """/api/v1/models and /api/v1/feedback."""
    router = APIRouter()

    @router.get("/api/v1/models")
    def models() -> dict[str, Any]:
        entries = node.lifecycle.models()
        state = node.lifecycle.read() if node.lifecycle.path.exists() else None
        return {
            "running": node.running_models,
            "live": state.live if state else None,
            "shadow": state.shadow if state else None,
            "models": [
                asdict(entry) | {"evaluation_summary": entry.evaluation.describe()}
                for entry in entries
            ],
            "shadow_agreement": [
                asdict(pair) | {"ratio": round(pair.ratio, 4)}
                for pair in node.shadow_results.agreement()
            ],
            "history": [asdict(entry) for entry in state.history] if state else [],
        }

    @router.post("/api/v1/feedback", status_code=201)
    def feedback(body: FeedbackIn) -> dict[str, Any]:
        recorded = node.feedback.record(Feedback(**body.model_dump()))
        log.info("feedback recorded", extra={"job_id": body.job_id, "finding": body.finding})
        return recorded

    @router.get("/api/v1/jobs/{job_id}/feedback")
    def job_feedback(job_id: int) -> dict[str, Any]:
        return {
            "feedback": node.feedback.for_job(job_id),
            "shadow": [asdict(r) for r in node.shadow_results.for_job(job_id)],
        }

    return router
