"""Job store on SQLAlchemy Core: SQLite (WAL) embedded, PostgreSQL for several workers.

Every state change is a compare-and-set (``UPDATE ... WHERE id = ? AND state = ? AND
lease_owner = ?``) so two workers can never both own a job, on either database, and every
state change appends a row to ``job_events``: the audit trail of what happened to each exam,
each row a move the transition table allows. The tables are ``node.db``'s; the schema is
brought up to date (``node.db.upgrade``) when a store starts.
Stored identifiers are DICOM UIDs and Orthanc ids only, never names or patient ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from node.db import job_events_table, jobs_table, node_state_table, routing_table, upgrade
from node.errors import Conflict, LeaseLost, NotFound
from node.jobs.states import LEASABLE, WORKING, JobState, check_transition


@dataclass(frozen=True)
class Job:
    id: int
    idempotency_key: str
    study_instance_uid: str
    model_ref: str
    state: JobState
    attempts: int
    max_attempts: int
    next_attempt_at: float
    lease_owner: str | None
    lease_expires_at: float | None
    created_at: float
    updated_at: float
    last_error: str | None
    payload: dict[str, Any]
    result: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | sa.RowMapping) -> Job:
        values = dict(row)
        values["state"] = JobState(values["state"])
        return cls(**values)


@dataclass(frozen=True)
class JobEvent:
    at: float
    from_state: str | None
    to_state: str
    worker: str | None
    reason: str | None


log = logging.getLogger(__name__)

TransitionListener = Callable[[Job, JobState | None, JobState, str | None], None]


class JobStore:
    """All reads and writes of jobs; listeners hear of every transition (notifications only)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._listeners: list[TransitionListener] = []
        upgrade(engine)

    def subscribe(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    def _notify(self, job: Job, old: JobState | None, new: JobState, reason: str | None) -> None:
        for listener in self._listeners:
            try:
                listener(job, old, new, reason)
            except Exception:
                log.exception("transition listener failed")

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    def _event(
        self,
        connection: Connection,
        job_id: int,
        old: JobState | None,
        new: JobState,
        worker: str | None,
        reason: str | None,
    ) -> None:
        connection.execute(
            job_events_table.insert().values(
                job_id=job_id,
                at=self.clock(),
                from_state=old.value if old else None,
                to_state=new.value,
                worker=worker,
                reason=reason,
            )
        )

    # -- creation -------------------------------------------------------------------------

    def create_job(
        self,
        *,
        idempotency_key: str,
        study_instance_uid: str,
        model_ref: str,
        payload: dict[str, Any],
        max_attempts: int,
        not_before: float | None = None,
        seen_at: float | None = None,
    ) -> tuple[Job, bool]:
        """Insert a queued job, or return the existing one with the same key (created=False).

        ``not_before``: the job is not leased before this time (exam assembly waits for views);
        ``seen_at``: when the caller saw the exam, the job's creation time, so that a deadline
        the caller computed from it keeps its meaning (default: now).
        """
        existing = self.find_by_key(idempotency_key)
        if existing is not None:
            return existing, False
        now = self.clock() if seen_at is None else seen_at
        try:
            with self._tx() as connection:
                inserted = connection.execute(
                    jobs_table.insert().values(
                        idempotency_key=idempotency_key,
                        study_instance_uid=study_instance_uid,
                        model_ref=model_ref,
                        state=JobState.RECEIVED.value,
                        attempts=0,
                        max_attempts=max_attempts,
                        next_attempt_at=now if not_before is None else not_before,
                        created_at=now,
                        updated_at=now,
                        payload=payload,
                    )
                ).inserted_primary_key
                assert inserted is not None
                job_id = int(inserted[0])
                self._event(connection, job_id, None, JobState.RECEIVED, None, "exam routed")
                check_transition(JobState.RECEIVED, JobState.QUEUED)
                connection.execute(
                    jobs_table.update()
                    .where(jobs_table.c.id == job_id)
                    .values(state=JobState.QUEUED.value)
                )
                self._event(connection, job_id, JobState.RECEIVED, JobState.QUEUED, None, None)
        except sa.exc.IntegrityError:
            # A concurrent request inserted the same key first: that job is the one.
            existing = self.find_by_key(idempotency_key)
            if existing is None:
                raise
            return existing, False
        job = self.get(job_id)
        self._notify(job, None, JobState.QUEUED, None)
        return job, True

    # -- reads ----------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """The job; NotFound when there is none."""
        with self.engine.connect() as connection:
            row = (
                connection.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no job {job_id}")
        return Job.from_row(row)

    def find_by_key(self, idempotency_key: str) -> Job | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    sa.select(jobs_table).where(jobs_table.c.idempotency_key == idempotency_key)
                )
                .mappings()
                .first()
            )
        return Job.from_row(row) if row else None

    def list_jobs(
        self,
        *,
        state: JobState | None = None,
        study_instance_uid: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        query = sa.select(jobs_table).order_by(jobs_table.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(jobs_table.c.state == state.value)
        if study_instance_uid is not None:
            query = query.where(jobs_table.c.study_instance_uid == study_instance_uid)
        with self.engine.connect() as connection:
            return [Job.from_row(row) for row in connection.execute(query).mappings()]

    def history(self, job_id: int) -> list[JobEvent]:
        query = (
            sa.select(job_events_table)
            .where(job_events_table.c.job_id == job_id)
            .order_by(job_events_table.c.id)
        )
        with self.engine.connect() as connection:
            return [
                JobEvent(r["at"], r["from_state"], r["to_state"], r["worker"], r["reason"])
                for r in connection.execute(query).mappings()
            ]

    def counts_by_state(self) -> dict[JobState, int]:
        query = sa.select(jobs_table.c.state, sa.func.count()).group_by(jobs_table.c.state)
        with self.engine.connect() as connection:
            counts = {JobState(state): n for state, n in connection.execute(query)}
        return {state: counts.get(state, 0) for state in JobState}

    # -- leases and transitions -----------------------------------------------------------

    def lease(self, worker: str, lease_seconds: float) -> Job | None:
        """Take the oldest job that is due: queued, retry past its backoff, or abandoned.

        An abandoned job (a working state whose lease expired: its worker died) is first
        moved to ``retry`` with the reason recorded, then leased like any other.
        """
        now = self.clock()
        candidates = sa.or_(
            sa.and_(
                jobs_table.c.state.in_([s.value for s in LEASABLE]),
                jobs_table.c.next_attempt_at <= now,
            ),
            sa.and_(
                jobs_table.c.state.in_([s.value for s in WORKING]),
                jobs_table.c.lease_expires_at < now,
            ),
        )
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    sa.select(jobs_table).where(candidates).order_by(jobs_table.c.id).limit(5)
                )
                .mappings()
                .all()
            )
        for row in rows:
            candidate: Job | None = Job.from_row(row)
            if candidate is not None and candidate.state in WORKING:
                candidate = self._reclaim(candidate)
            if candidate is None:
                continue
            job = candidate
            leased = self._cas(
                job,
                JobState.FETCHING,
                worker=worker,
                reason=f"attempt {job.attempts + 1}",
                values={
                    "lease_owner": worker,
                    "lease_expires_at": now + lease_seconds,
                    "attempts": job.attempts + 1,
                },
                expect_owner=False,
            )
            if leased is not None:
                return leased
        return None

    def _reclaim(self, job: Job) -> Job | None:
        reason = f"lease of {job.lease_owner} expired in {job.state}"
        # Only while it is still expired: a heartbeat may have renewed it since we read it.
        reclaimed = self._cas(
            job,
            JobState.RETRY,
            worker=None,
            reason=reason,
            values={"lease_owner": None, "lease_expires_at": None, "last_error": reason},
            expect_owner=True,
            also=jobs_table.c.lease_expires_at < self.clock(),
        )
        return reclaimed

    def renew(self, job_id: int, *, worker: str, lease_seconds: float) -> None:
        """Extend a lease we hold (the worker's heartbeat while a stage runs); LeaseLost
        when it is no longer ours: another worker reclaimed the job, or it was settled."""
        condition = sa.and_(
            jobs_table.c.id == job_id,
            jobs_table.c.lease_owner == worker,
            jobs_table.c.state.in_([s.value for s in WORKING]),
        )
        with self._tx() as connection:
            updated = connection.execute(
                jobs_table.update()
                .where(condition)
                .values(lease_expires_at=self.clock() + lease_seconds)
            )
        if updated.rowcount != 1:
            raise LeaseLost(f"job {job_id} is no longer leased by {worker}")

    def release_leases(self, owner_prefix: str, reason: str) -> list[Job]:
        """Put back in ``retry`` (due at once) every working job whose lease owner starts
        with ``owner_prefix``: at start-up, the jobs a dead predecessor of this node held,
        so they need not wait for their leases to expire."""
        query = sa.select(jobs_table).where(
            jobs_table.c.state.in_([s.value for s in WORKING]),
            jobs_table.c.lease_owner.startswith(owner_prefix, autoescape=True),
        )
        with self.engine.connect() as connection:
            held = [Job.from_row(row) for row in connection.execute(query).mappings()]
        released = []
        for job in held:
            why = f"lease of {job.lease_owner} expired with its node in {job.state} ({reason})"
            moved = self._cas(
                job,
                JobState.RETRY,
                worker=None,
                reason=why,
                values={
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "last_error": why,
                    "next_attempt_at": self.clock(),
                },
                expect_owner=True,
            )
            if moved is not None:
                released.append(moved)
        return released

    def advance(
        self,
        job: Job,
        target: JobState,
        *,
        worker: str,
        lease_seconds: float,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> Job:
        """Move a leased job on; raise LeaseLost if the lease is no longer ours."""
        values: dict[str, Any] = {"lease_expires_at": self.clock() + lease_seconds}
        if result is not None:
            values["result"] = result
        if target is JobState.DONE:
            values.update(lease_owner=None, lease_expires_at=None, last_error=None)
        moved = self._cas(
            job, target, worker=worker, reason=reason, values=values, expect_owner=True
        )
        if moved is None:
            raise LeaseLost(f"job {job.id} is no longer leased by {worker}")
        return moved

    def give_up(
        self, job: Job, *, worker: str, reason: str, retryable: bool, backoff: float
    ) -> Job:
        """Record a failed attempt: retry after ``backoff`` seconds, or fail for good."""
        final = not retryable or job.attempts >= job.max_attempts
        target = JobState.FAILED if final else JobState.RETRY
        if final and retryable:
            reason = f"{reason} (gave up after {job.attempts} attempts)"
        values = {
            "lease_owner": None,
            "lease_expires_at": None,
            "last_error": reason,
            "next_attempt_at": self.clock() + (0.0 if final else backoff),
        }
        moved = self._cas(
            job, target, worker=worker, reason=reason, values=values, expect_owner=True
        )
        if moved is None:
            raise LeaseLost(f"job {job.id} is no longer leased by {worker}")
        return moved

    def regroup_queued(
        self,
        job: Job,
        *,
        idempotency_key: str,
        payload: dict[str, Any],
        not_before: float,
        reason: str,
    ) -> Job | None:
        """Give a job that no worker has started a new instance set (exam assembly: more
        images arrived while it waited). None when it has been leased meanwhile."""
        condition = sa.and_(
            jobs_table.c.id == job.id,
            jobs_table.c.state == JobState.QUEUED.value,
            jobs_table.c.attempts == 0,
        )
        try:
            with self._tx() as connection:
                updated = connection.execute(
                    jobs_table.update()
                    .where(condition)
                    .values(
                        idempotency_key=idempotency_key,
                        payload=payload,
                        next_attempt_at=not_before,
                        updated_at=self.clock(),
                    )
                )
                if updated.rowcount != 1:
                    return None
        except sa.exc.IntegrityError:
            return None  # another intake already regrouped it to this instance set
        # Not a transition (the job stays queued), so no row in job_events: that trail holds
        # only moves the transition table allows. The reason goes to the log.
        log.info("queued job regrouped: %s", reason, extra={"job_id": job.id})
        return self.get(job.id)

    def requeue(self, job_id: int, reason: str = "re-queued by an administrator") -> Job:
        """Send a failed job round again (fresh attempts).

        Raises NotFound, InvalidTransition (the job is not failed) or Conflict (it changed
        meanwhile).
        """
        job = self.get(job_id)
        moved = self._cas(
            job,
            JobState.QUEUED,
            worker=None,
            reason=reason,
            values={"attempts": 0, "next_attempt_at": self.clock()},
            expect_owner=False,
        )
        if moved is None:
            raise Conflict(f"job {job_id} changed while being re-queued")
        return moved

    def _cas(
        self,
        job: Job,
        target: JobState,
        *,
        worker: str | None,
        reason: str | None,
        values: dict[str, Any],
        expect_owner: bool,
        also: sa.ColumnElement[bool] | None = None,
    ) -> Job | None:
        check_transition(job.state, target)
        condition = sa.and_(jobs_table.c.id == job.id, jobs_table.c.state == job.state.value)
        if also is not None:
            condition = sa.and_(condition, also)
        if expect_owner:
            owner = jobs_table.c.lease_owner
            condition = sa.and_(
                condition, owner.is_(None) if job.lease_owner is None else owner == job.lease_owner
            )
        with self._tx() as connection:
            updated = connection.execute(
                jobs_table.update()
                .where(condition)
                .values(state=target.value, updated_at=self.clock(), **values)
            )
            if updated.rowcount != 1:
                return None
            self._event(connection, job.id, job.state, target, worker, reason)
        moved = self.get(job.id)
        self._notify(moved, job.state, target, reason)
        return moved

    # -- routing record and node state ----------------------------------------------------

    def record_routing(
        self,
        *,
        study_instance_uid: str,
        series_instance_uid: str,
        decision: str,
        reason: str,
        instances: int,
    ) -> bool:
        """Record one routing outcome per series; False when it was already recorded."""
        try:
            with self._tx() as connection:
                connection.execute(
                    routing_table.insert().values(
                        at=self.clock(),
                        study_instance_uid=study_instance_uid,
                        series_instance_uid=series_instance_uid,
                        decision=decision,
                        reason=reason,
                        instances=instances,
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def routing_decisions(self, study_instance_uid: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(routing_table).order_by(routing_table.c.id)
        if study_instance_uid is not None:
            query = query.where(routing_table.c.study_instance_uid == study_instance_uid)
        with self.engine.connect() as connection:
            return [dict(r) for r in connection.execute(query).mappings()]

    def get_state(self, key: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(node_state_table.c.value).where(node_state_table.c.key == key)
            ).scalar()

    def set_state(self, key: str, value: str) -> None:
        with self._tx() as connection:
            updated = connection.execute(
                node_state_table.update().where(node_state_table.c.key == key).values(value=value)
            )
            if updated.rowcount == 0:
                connection.execute(node_state_table.insert().values(key=key, value=value))

    def claim_state(self, key: str, value: str) -> str:
        """Set ``key`` to ``value`` unless it is already set; the value it holds afterwards.

        The first writer wins on either database (the key is the primary key), so node
        processes racing to record the same fact all read back one answer."""
        try:
            with self._tx() as connection:
                connection.execute(node_state_table.insert().values(key=key, value=value))
        except sa.exc.IntegrityError:
            pass  # set before us: keep that value
        held = self.get_state(key)
        if held is None:  # pragma: no cover - a row is never deleted
            raise NotFound(f"node state {key} vanished")
        return held
