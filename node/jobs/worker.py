"""A worker: lease a job, run its stages, record the outcome. Leases make crashes safe:
a worker that dies leaves its job to expire and be taken up again by any worker.

A heartbeat renews the lease while a stage runs (a stage may well outlast the lease), so no
second worker starts a job that is still being worked on; a worker whose lease was lost
anyway (it froze, or the database was out of reach for a whole lease) stops at the next
stage and never publishes: the lease is checked right before publishing."""

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

from sqlalchemy.exc import SQLAlchemyError

from node.errors import FinalError, LeaseLost, RetryableError
from node.events import EventBus, JobFailed, StageFinished
from node.jobs.pipeline import ExamWork
from node.jobs.states import NEXT_STAGE, JobState
from node.jobs.store import Job, JobStore
from node.retry import backoff_seconds

log = logging.getLogger(__name__)


def new_worker_id(node_identity: str | None = None) -> str:
    """``<node identity>/<pid>:<random>``: the node identity (host and data dir) lets a node
    that restarts on its own data dir recognise the leases of its dead predecessor."""
    identity = node_identity or socket.gethostname()
    return f"{identity}/{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseHeartbeat:
    """Renews one job's lease every third of ``lease_seconds`` in a thread of its own;
    ``lost`` is set (and the thread ends) once the store says the lease is not ours."""

    def __init__(self, store: JobStore, job_id: int, worker: str, lease_seconds: float) -> None:
        self.store = store
        self.job_id = job_id
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self.store.renew(self.job_id, worker=self.worker, lease_seconds=self.lease_seconds)
            except LeaseLost:
                log.warning("lease lost while a stage ran", extra={"job_id": self.job_id})
                self.lost.set()
                return
            except SQLAlchemyError as error:
                # The database is out of reach: try again at the next beat, while the
                # lease lasts; the compare-and-sets decide whether it is still ours.
                log.warning(
                    "lease renewal failed: %s", type(error).__name__, extra={"job_id": self.job_id}
                )


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker needs of the settings (node.config.Settings documents each)."""

    lease_seconds: float  # how long a lease lasts; renewed at each stage
    backoff_seconds: float  # first retry delay, doubled per attempt ...
    backoff_max_seconds: float  # ... up to this
    poll_seconds: float  # how long an idle worker waits before looking again, unless woken


class ExamStages(Protocol):
    """The stages a worker runs in order (ExamPipeline in the node); each reads and fills
    the ExamWork and raises RetryableError or FinalError to end the attempt."""

    def fetch(self, work: ExamWork) -> None: ...
    def infer(self, work: ExamWork) -> None: ...
    def write(self, work: ExamWork) -> None: ...
    def publish(self, work: ExamWork) -> None: ...


class Doorbell:
    """Wakes idle workers when a job may have become due (one queued, regrouped or requeued
    in this process), so a new exam waits for no poll interval. The poll stays as the bound
    for what rings no bell here: jobs due later (assembly wait, retry backoff) and jobs queued
    by another process on a shared database.

    One event for every worker: ``ring`` wakes all that wait; each clears it before looking
    for a job, so a ring after that look is never lost (the next wait returns at once)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def ring(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, seconds: float) -> bool:
        """True when rung within ``seconds``."""
        return self._event.wait(seconds)


class Worker:
    def __init__(
        self,
        store: JobStore,
        pipeline: ExamStages,
        bus: EventBus,
        options: WorkerOptions,
        worker_id: str | None = None,
        doorbell: Doorbell | None = None,
    ) -> None:
        self.doorbell = doorbell or Doorbell()
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
        heartbeat = LeaseHeartbeat(self.store, job.id, self.worker_id, self.options.lease_seconds)
        try:
            with heartbeat:
                return self._run_stages(job, work, heartbeat)
        except LeaseLost:
            log.warning("lease lost; another worker has the job", extra={"job_id": job.id})
            return work.job
        except RetryableError as error:
            return self._give_up(work.job, error, retryable=True)
        except FinalError as error:
            return self._give_up(work.job, error, retryable=False)
        except Exception as error:
            log.exception("unexpected error in %s", work.job.state, extra={"job_id": job.id})
            return self._give_up(work.job, error, retryable=True)

    def _run_stages(self, job: Job, work: ExamWork, heartbeat: LeaseHeartbeat) -> Job:
        while job.state in self.stages:
            if heartbeat.lost.is_set():
                raise LeaseLost(f"job {job.id} is no longer leased by {self.worker_id}")
            if job.state is JobState.PUBLISHING:
                # Results leave the node only while the lease is ours (and fresh).
                self.store.renew(
                    job.id, worker=self.worker_id, lease_seconds=self.options.lease_seconds
                )
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
        """Work until ``stop`` is set; whoever sets it rings the doorbell to end the wait."""
        while not stop.is_set():
            self.doorbell.clear()  # before looking: a job queued from now on rings again
            try:
                job = self.run_once()
            except Exception:
                log.exception("worker loop error")
                job = None
            if job is None:
                self.doorbell.wait(self.options.poll_seconds)
