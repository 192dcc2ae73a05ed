"""Deliveries: one row per (job, destination), each with its own retries and a dead letter.

Why apart from the job: an exam's analysis is done once; sending its results is a separate
unit of work per destination. A destination that is down must neither hold up the others
nor make the node re-run the model, and one that already has the results must never get
them again. So the publish stage writes the outputs once to the outbox
(``node.delivery.outbox``), records one delivery per destination and tries each once; a
delivery that failed is retried from the outbox by :meth:`Deliveries.run_due` with
exponential backoff (``node.retry``), and after the destination's ``max_attempts`` it is
dead-lettered, visible in the job API and in ``mammo_node_deliveries{destination,state}``.
The lifecycle is the transition table of ``node.delivery.states``.

Every attempt is claimed by a compare-and-set, so two workers never send the same delivery
at once, and every outcome is recorded by one: an outcome that lost it (the delivery changed
meanwhile) is reported as lost, never logged as a success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import deliveries_table, upgrade
from node.delivery.outbox import Outbox
from node.delivery.publishers import Publisher
from node.delivery.selection import selected_kinds, union_of_kinds
from node.delivery.states import SENDABLE, DeliveryState, check_transition
from node.errors import Conflict, FinalError, NotFound, RetryableError
from node.retry import backoff_seconds
from node.writers.outputs import Output

log = logging.getLogger(__name__)

MAX_DUE_PER_PASS = 20  # bounded work per pass of the retry loop


@dataclass(frozen=True)
class Delivery:
    id: int
    job_id: int
    destination: str
    state: DeliveryState
    attempts: int
    max_attempts: int
    next_attempt_at: float
    kinds: list[str]
    sent: int
    last_error: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        values = dict(row)
        values["state"] = DeliveryState(values["state"])
        return cls(**values)

    def view(self) -> dict[str, Any]:
        """For the job API: no identifiers beyond the job id."""
        return {
            "destination": self.destination,
            "state": self.state.value,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "next_attempt_at": self.next_attempt_at if self.state in SENDABLE else None,
            "kinds": self.kinds,
            "sent": self.sent,
            "last_error": self.last_error,
        }


class Deliveries:
    """The delivery table, the outbox and the publishers of every configured destination."""

    def __init__(
        self,
        engine: Engine,
        publishers: Sequence[Publisher],
        outbox_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.outbox = Outbox(outbox_dir)
        self.publishers = {p.destination.name: p for p in publishers}
        self.kinds = {name: selected_kinds(p.destination) for name, p in self.publishers.items()}
        upgrade(engine)

    @property
    def wanted_kinds(self) -> tuple[str, ...]:
        return union_of_kinds([p.destination for p in self.publishers.values()])

    # -- the publish stage ----------------------------------------------------------------

    def deliver_job(self, job_id: int, outputs: Sequence[Output]) -> list[Delivery]:
        """Put the outputs in the outbox, plan one delivery per destination and try each
        pending one once now. Delivered and dead-lettered ones are left alone."""
        self.outbox.write(job_id, outputs)
        for name in self.publishers:
            self._plan(job_id, name)
        for delivery in self.for_job(job_id):
            if delivery.state is DeliveryState.PENDING:
                self._attempt(delivery)
        settled = self.for_job(job_id)
        self._clean_outbox(job_id, settled)
        return settled

    def _plan(self, job_id: int, name: str) -> None:
        now = self.clock()
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    deliveries_table.insert().values(
                        job_id=job_id,
                        destination=name,
                        state=DeliveryState.PENDING.value,
                        attempts=0,
                        max_attempts=self.publishers[name].destination.max_attempts,
                        next_attempt_at=now,
                        kinds=list(self.kinds[name]),
                        sent=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            pass  # planned by an earlier attempt of the job: keep its state

    # -- the retry loop -------------------------------------------------------------------

    def run_due(self) -> int:
        """Retry the deliveries whose backoff has passed; return how many were attempted."""
        now = self.clock()
        query = (
            sa.select(deliveries_table)
            .where(deliveries_table.c.state == DeliveryState.RETRY.value)
            .where(deliveries_table.c.next_attempt_at <= now)
            .order_by(deliveries_table.c.next_attempt_at)
            .limit(MAX_DUE_PER_PASS)
        )
        with self.engine.connect() as connection:
            due = [Delivery.from_row(r) for r in connection.execute(query).mappings()]
        for delivery in due:
            self._attempt(delivery)
            self._clean_outbox(delivery.job_id, self.for_job(delivery.job_id))
        return len(due)

    def run(self, stop: threading.Event, poll_seconds: float) -> None:
        while not stop.is_set():
            try:
                self.run_due()
            except (sa.exc.SQLAlchemyError, OSError) as error:
                log.warning("delivery pass failed; next pass will retry: %s", error)
            stop.wait(poll_seconds)

    def resend(self, job_id: int, destination: str) -> Delivery:
        """An administrator sends a dead-lettered delivery again (fresh attempts).

        Raises NotFound, InvalidTransition (not dead-lettered), FinalError (the outbox is
        gone) or Conflict (the delivery changed meanwhile).
        """
        delivery = self.get(job_id, destination)
        check_transition(delivery.state, DeliveryState.RETRY)
        if not self.outbox.holds(job_id):
            raise FinalError(f"the outbox of job {job_id} is gone; re-queue the job instead")
        self._update(
            delivery,
            DeliveryState.RETRY,
            attempts=0,
            next_attempt_at=self.clock(),
            last_error=f"re-sent by an administrator after: {delivery.last_error}",
        )
        return self.get(job_id, destination)

    # -- one attempt ----------------------------------------------------------------------

    def _attempt(self, delivery: Delivery) -> None:
        publisher = self.publishers.get(delivery.destination)
        if publisher is None:
            self._settle(
                delivery,
                DeliveryState.DEAD_LETTER,
                last_error=f"destination {delivery.destination} is no longer configured",
            )
            return
        destination = publisher.destination
        attempt = delivery.attempts + 1
        # Claim the attempt; until it ends, the backoff keeps the retry loop away from it.
        hold = destination.timeout_seconds + backoff_seconds(
            attempt, destination.backoff_seconds, destination.backoff_max_seconds
        )
        claimed = self._claim(delivery, self.clock() + hold)
        if claimed is None:
            return
        try:
            if not self.outbox.holds(claimed.job_id):
                # Written by a node process with another data folder: never count a send
                # that did not happen as delivered (several node processes share one folder).
                raise RetryableError(
                    f"the outbox of job {claimed.job_id} is not in this node's data folder "
                    "(node replicas must share it: the chart's persistence volume)"
                )
            files = self.outbox.files(claimed.job_id, claimed.kinds)
            sent = publisher.publish(files) if files else 0
        except (RetryableError, OSError) as error:
            self._failed(claimed, attempt, f"{type(error).__name__}: {error}", final=False)
            return
        except FinalError as error:
            self._failed(claimed, attempt, f"{type(error).__name__}: {error}", final=True)
            return
        if self._settle(
            claimed, DeliveryState.DELIVERED, attempts=attempt, sent=sent, last_error=None
        ):
            log.info(
                "results delivered",
                extra={"job_id": claimed.job_id, "destination": claimed.destination, "sent": sent},
            )

    def _failed(self, delivery: Delivery, attempt: int, reason: str, *, final: bool) -> None:
        destination = self.publishers[delivery.destination].destination
        dead = final or attempt >= delivery.max_attempts
        if dead and not final:
            reason = f"{reason} (dead-lettered after {attempt} attempts)"
        wait = backoff_seconds(
            attempt, destination.backoff_seconds, destination.backoff_max_seconds
        )
        state = DeliveryState.DEAD_LETTER if dead else DeliveryState.RETRY
        if self._settle(
            delivery,
            state,
            attempts=attempt,
            next_attempt_at=self.clock() + (0.0 if dead else wait),
            last_error=reason,
        ):
            log.warning(
                "delivery attempt failed",
                extra={
                    "job_id": delivery.job_id,
                    "destination": delivery.destination,
                    "attempt": attempt,
                    "state": state.value,
                },
            )

    def _claim(self, delivery: Delivery, hold_until: float) -> Delivery | None:
        """Take the attempt (None if another worker took it first): a compare-and-set on
        the row as read, which the claim itself changes (``next_attempt_at``)."""
        with self.engine.begin() as connection:
            updated = connection.execute(
                deliveries_table.update()
                .where(deliveries_table.c.id == delivery.id)
                .where(deliveries_table.c.attempts == delivery.attempts)
                .where(deliveries_table.c.next_attempt_at == delivery.next_attempt_at)
                .where(deliveries_table.c.state.in_([s.value for s in SENDABLE]))
                .values(next_attempt_at=hold_until, updated_at=self.clock())
            )
        if updated.rowcount != 1:
            return None
        return self.get(delivery.job_id, delivery.destination)

    def _update(self, delivery: Delivery, target: DeliveryState, **values: Any) -> None:
        """Move ``delivery`` on if its row is still as read; Conflict when it changed."""
        check_transition(delivery.state, target)
        with self.engine.begin() as connection:
            updated = connection.execute(
                deliveries_table.update()
                .where(deliveries_table.c.id == delivery.id)
                .where(deliveries_table.c.state == delivery.state.value)
                .where(deliveries_table.c.attempts == delivery.attempts)
                .values(state=target.value, updated_at=self.clock(), **values)
            )
        if updated.rowcount != 1:
            raise Conflict(
                f"delivery of job {delivery.job_id} to {delivery.destination} changed "
                f"while moving from {delivery.state} to {target}"
            )

    def _settle(self, delivery: Delivery, target: DeliveryState, **values: Any) -> bool:
        """Record an attempt's outcome; False, reported, when the delivery changed meanwhile
        (the outcome is lost: whoever changed it decides what happens next)."""
        try:
            self._update(delivery, target, **values)
        except Conflict as error:
            log.error(
                "delivery outcome not recorded: %s",
                error,
                extra={
                    "job_id": delivery.job_id,
                    "destination": delivery.destination,
                    "state": target.value,
                },
            )
            return False
        return True

    # -- reads ----------------------------------------------------------------------------

    def for_job(self, job_id: int) -> list[Delivery]:
        query = (
            sa.select(deliveries_table)
            .where(deliveries_table.c.job_id == job_id)
            .order_by(deliveries_table.c.id)
        )
        with self.engine.connect() as connection:
            return [Delivery.from_row(r) for r in connection.execute(query).mappings()]

    def get(self, job_id: int, destination: str) -> Delivery:
        """The delivery of a job to a destination; NotFound when there is none."""
        for delivery in self.for_job(job_id):
            if delivery.destination == destination:
                return delivery
        raise NotFound(f"no delivery of job {job_id} to {destination}")

    def recent(self, state: DeliveryState | None = None, limit: int = 100) -> list[Delivery]:
        query = sa.select(deliveries_table).order_by(deliveries_table.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(deliveries_table.c.state == state.value)
        with self.engine.connect() as connection:
            return [Delivery.from_row(r) for r in connection.execute(query).mappings()]

    def counts(self) -> dict[tuple[str, str], int]:
        """(destination, state) -> deliveries, for the metrics collector."""
        query = sa.select(
            deliveries_table.c.destination, deliveries_table.c.state, sa.func.count()
        ).group_by(deliveries_table.c.destination, deliveries_table.c.state)
        with self.engine.connect() as connection:
            counts = {(d, s): int(n) for d, s, n in connection.execute(query)}
        for name in self.publishers:
            for state in DeliveryState:
                counts.setdefault((name, state.value), 0)
        return counts

    def _clean_outbox(self, job_id: int, deliveries: Sequence[Delivery]) -> None:
        """Remove the outbox once every destination has the results (kept for dead letters,
        so an administrator can re-send)."""
        if deliveries and all(d.state is DeliveryState.DELIVERED for d in deliveries):
            self.outbox.remove(job_id)


def delivery_summary(deliveries: Sequence[Delivery]) -> str:
    """One word for a job's deliveries: the worst state wins."""
    states = {d.state for d in deliveries}
    for state in (DeliveryState.DEAD_LETTER, DeliveryState.RETRY, DeliveryState.PENDING):
        if state in states:
            return state.value
    return DeliveryState.DELIVERED.value if states else "none"
