"""A worker: lease a job, run its stages, record the outcome. Leases make crashes safe:
a worker that dies leaves its job to expire and be taken up again by any worker."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from node.errors import FinalError, LeaseLost, RetryableError
from node.events import EventBus, JobFailed, StageFinished
from node.jobs.pipeline import ExamWork
from node.jobs.states import NEXT_STAGE, JobState
from node.jobs.store import Job, JobStore
from node.retry import backoff_seconds

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker needs of the settings (node.config.Settings documents each)."""

    lease_seconds: float  # how long a lease lasts; renewed at each stage
    backoff_seconds: float  # first retry delay, doubled per attempt ...
    backoff_max_seconds: float  # ... up to this
    poll_seconds: float  # how long an idle worker waits before looking again


class ExamStages(Protocol):
    """The stages a worker runs in order (ExamPipeline in the node); each reads and fills
    the ExamWork and raises RetryableError or FinalError to end the attempt."""

    def fetch(self, work: ExamWork) -> None: ...
    def infer(self, work: ExamWork) -> None: ...
    def write(self, work: ExamWork) -> None: ...
    def publish(self, work: ExamWork) -> None: ...


class Worker:
    def __init__(
        self,
        store: JobStore,
        pipeline: ExamStages,
        bus: EventBus,
        options: WorkerOptions,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.bus = bus
        self.options = options
        self.worker_id = worker_id or new_worker_id()
        self.stages: dict[JobState, Callable[[ExamWork], None]] = {
            JobState.FETCHING: pipeline.fetch,
            JobState.INFERRING: pipeline.infer,
            JobState.WRITING: pipeline.write,
            JobState.PUBLISHING: pipeline.publish,
        }

    def run_once(self) -> Job | None:
        """Lease and process one job; None when no job was due."""
        job = self.store.lease(self.worker_id, self.options.lease_seconds)
        if job is None:
            return None
        return self.process(job)

    def process(self, job: Job) -> Job:
        work = ExamWork(job)
        try:
            while job.state in self.stages:
                started = time.monotonic()
                self.stages[job.state](work)
                self.bus.emit(StageFinished(job.id, job.state.value, time.monotonic() - started))
                target = NEXT_STAGE[job.state]
                job = self.store.advance(
                    job,
                    target,
                    worker=self.worker_id,
                    lease_seconds=self.options.lease_seconds,
                    result=work.summary().to_json() if target is JobState.DONE else None,
                )
                work.job = job
            log.info("exam done", extra={"job_id": job.id, "attempt": job.attempts})
            return job
        except LeaseLost:
            log.warning("lease lost; another worker has the job", extra={"job_id": job.id})
            return job
        except RetryableError as error:
            return self._give_up(job, error, retryable=True)
        except FinalError as error:
            return self._give_up(job, error, retryable=False)
        except Exception as error:
            log.exception("unexpected error in %s", job.state, extra={"job_id": job.id})
            return self._give_up(job, error, retryable=True)

    def _give_up(self, job: Job, error: Exception, *, retryable: bool) -> Job:
        reason = f"{job.state}: {type(error).__name__}: {error}"
        backoff = backoff_seconds(
            job.attempts, self.options.backoff_seconds, self.options.backoff_max_seconds
        )
        try:
            moved = self.store.give_up(
                job, worker=self.worker_id, reason=reason, retryable=retryable, backoff=backoff
            )
        except LeaseLost:
            return job
        self.bus.emit(JobFailed(job.id, type(error).__name__, moved.state is JobState.FAILED))
        log.warning(
            "job attempt failed",
            extra={"job_id": job.id, "state": moved.state.value, "error": type(error).__name__},
        )
        return moved

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                job = self.run_once()
            except Exception:
                log.exception("worker loop error")
                job = None
            if job is None:
                stop.wait(self.options.poll_seconds)
