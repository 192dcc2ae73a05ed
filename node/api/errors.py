"""One table from the node's exceptions to HTTP status, applied to every route.

Routes raise the node's own exceptions and never map them by hand; ``add_error_handlers``
answers each with ``{"detail": message}`` (FastAPI's own shape) and logs it once. The most
specific class in the table wins (``JobNotReviewable`` before ``InvalidFeedback``).
"""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from node.errors import (
    ConfigError,
    Conflict,
    FinalError,
    InvalidFeedback,
    InvalidInput,
    InvalidModelConfig,
    InvalidTransition,
    JobNotReviewable,
    LifecycleError,
    MammoNodeError,
    NotFound,
    PromotionRefused,
    RetryableError,
)

log = logging.getLogger(__name__)

STATUS: dict[type[Exception], int] = {
    NotFound: 404,  # no such job, delivery, destination
    Conflict: 409,  # the request contradicts the current state (LeaseLost too)
    InvalidTransition: 409,  # e.g. re-send of a delivery that is not dead-lettered
    JobNotReviewable: 409,  # feedback on a job that has no result yet
    PromotionRefused: 409,  # the candidate is worse than the live model
    FinalError: 409,  # the request can never succeed as things stand (outbox gone)
    InvalidInput: 422,  # a DICOM object or value the node cannot use
    InvalidFeedback: 422,  # feedback naming a finding the result does not have
    RetryableError: 503,  # a peer down or timing out: try again later (PeerUnavailable)
    LifecycleError: 500,  # registry.yaml unreadable: the node's own state is broken
    InvalidModelConfig: 500,  # a model.yaml in the models folder is unusable
    ConfigError: 500,
    MammoNodeError: 500,  # raised on purpose but not classified above
}


def status_for(error: Exception) -> int:
    """The status of the most specific class of ``error`` in ``STATUS``."""
    for cls in type(error).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def _answer(request: Request, error: Exception) -> JSONResponse:
    status = status_for(error)
    level = logging.WARNING if status >= 500 else logging.INFO
    log.log(
        level,
        "%s %s: %s %s: %s",
        request.method,
        request.url.path,
        status,
        type(error).__name__,
        error,
    )
    return JSONResponse({"detail": str(error)}, status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every ``MammoNodeError`` a route raises by the table above."""
    app.add_exception_handler(MammoNodeError, _answer)
