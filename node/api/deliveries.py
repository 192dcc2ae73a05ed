"""Delivery routes of the node's API: what each destination got, and the dead letters.

No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.
"""

from typing import Any, Protocol

from fastapi import APIRouter

from node.delivery.service import Deliveries, delivery_summary
from node.delivery.states import DeliveryState


class DeliveryServices(Protocol):
    deliveries: Deliveries


def job_deliveries(node: DeliveryServices, job_id: int) -> dict[str, Any]:
    """For the job view: every delivery and one word for them all (dead_letter wins)."""
    deliveries = node.deliveries.for_job(job_id)
    return {
        "delivery": delivery_summary(deliveries),
        "deliveries": [d.view() for d in deliveries],
    }


def delivery_router(node: DeliveryServices) -> APIRouter:
    """/api/v1/deliveries and the re-send of a dead letter; errors map by ``node.api.errors``."""
    router = APIRouter()

    @router.get("/api/v1/deliveries")
    def list_deliveries(
        state: DeliveryState | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Deliveries, newest first; ``?state=dead_letter`` lists what needs an administrator."""
        limit = max(1, min(limit, 1000))
        return [{"job_id": d.job_id, **d.view()} for d in node.deliveries.recent(state, limit)]

    @router.post("/api/v1/jobs/{job_id}/deliveries/{destination}/resend")
    def resend(job_id: int, destination: str) -> dict[str, Any]:
        """Send a dead-lettered delivery again (fresh attempts, from the outbox)."""
        delivery = node.deliveries.resend(job_id, destination)
        return delivery.view()

    return router
