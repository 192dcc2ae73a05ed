"""Notification events: the core emits them, observers (metrics, audit logs) subscribe.

A handler's error is logged and swallowed: a notification can never fail a job
(pynetdicom's notification hooks work the same way).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.domain import ExamResult, PreparedImage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobTransitioned:
    job_id: int
    from_state: str | None
    to_state: str
    reason: str | None
    created_at: float
    at: float


@dataclass(frozen=True)
class StageFinished:
    job_id: int
    stage: str
    seconds: float


@dataclass(frozen=True)
class JobFailed:
    job_id: int
    category: str  # an exception class name: never free text with identifiers
    final: bool


@dataclass(frozen=True)
class SeriesRouted:
    decision: str  # "routed" or "ignored"
    reason_code: str  # a short fixed code, safe as a metric label
    instances: int


@dataclass(frozen=True)
class OrthancRestarted:
    """The node started its embedded Orthanc again after it had exited."""

    failures: int  # exits in a row so far (the backoff doubles with each)


@dataclass(frozen=True)
class ExamScored:
    """The live model has scored an exam. Observers (the shadow model) may score the same
    prepared images with their own model; they can neither change the live result nor fail
    the job. Emitted synchronously, before the result objects are written."""

    job_id: int
    images: tuple[PreparedImage, ...]  # the images the live model scored, in its order
    exam: ExamResult  # the live model's result


Handler = Callable[[Any], object]  # what a handler returns is ignored


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: type, handler: Handler) -> None:
        self._handlers[event_type].append(handler)

    def emit(self, event: object) -> None:
        for handler in self._handlers.get(type(event), ()):
            try:
                handler(event)
            except Exception:
                log.exception("event handler failed", extra={"event": type(event).__name__})
