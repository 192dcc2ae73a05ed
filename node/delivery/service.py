"""Deliveries: one row per (job, destination), each with its own retries and a dead letter.

Why apart from the job: an exam's analysis is done once; sending its results is a separate
unit of work per destination. A destination that is down must neither hold up the others
nor make the node re-run the model, and one that already has the results must never get
them again. So the publish stage writes the outputs once to an outbox on disk
(``<data_dir>/outbox/job-<id>/``), records one delivery per destination and tries each once;
a delivery that failed is retried from the outbox by :meth:`Deliveries.run_due` with
exponential backoff, and after the destination's ``max_attempts`` it is dead-lettered,
visible in the job API and in ``mammo_node_deliveries{destination,state}``.

Lifecycle (a transition table, like the job's)::

    pending -> delivered | retry | dead_letter
    retry   -> delivered | retry | dead_letter
    dead_letter -> retry (an administrator re-sends)

Every attempt is claimed by a compare-and-set on ``attempts``, so two workers never send the
same delivery at once. With several node replicas the outbox must be on a shared volume.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import pydicom
import sqlalchemy as sa
from pydicom.errors import InvalidDicomError

from node.config import ALL_OUTPUTS, Destination
from node.db import deliveries_table
from node.errors import ConfigError, FinalError, InvalidTransition, RetryableError
from node.jobs.store import JobStore
from node.net.dicomweb import DicomWebClient
from node.net.dimse import echo as dimse_echo
from node.net.dimse import peer_of, send
from node.writers.outputs import DEFAULT_OUTPUT_KINDS, OUTPUT_KINDS, Output

log = logging.getLogger(__name__)


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


D = DeliveryState
TRANSITION_TABLE: dict[DeliveryState, frozenset[DeliveryState]] = {
    D.PENDING: frozenset({D.DELIVERED, D.RETRY, D.DEAD_LETTER}),
    D.RETRY: frozenset({D.DELIVERED, D.RETRY, D.DEAD_LETTER}),
    D.DELIVERED: frozenset(),
    D.DEAD_LETTER: frozenset({D.RETRY}),
}
SENDABLE = frozenset({D.PENDING, D.RETRY})
MAX_DUE_PER_PASS = 20  # bounded work per pass of the retry loop


def check_transition(current: DeliveryState, target: DeliveryState) -> None:
    if target not in TRANSITION_TABLE[current]:
        raise InvalidTransition(f"a delivery cannot move from {current} to {target}")


def selected_kinds(destination: Destination) -> tuple[str, ...]:
    """The output kinds a destination receives; ConfigError names unknown ones."""
    if not destination.outputs:
        return DEFAULT_OUTPUT_KINDS
    if ALL_OUTPUTS in destination.outputs:
        return tuple(OUTPUT_KINDS)
    unknown = sorted(set(destination.outputs) - set(OUTPUT_KINDS))
    if unknown:
        raise ConfigError(
            f"destination {destination.name}: unknown output kinds {', '.join(unknown)} "
            f"(known: {', '.join(OUTPUT_KINDS)}, or '{ALL_OUTPUTS}')"
        )
    return tuple(kind for kind in OUTPUT_KINDS if kind in destination.outputs)


def union_of_kinds(destinations: Sequence[Destination]) -> tuple[str, ...]:
    """What the pipeline builds, once: every kind some destination wants, in build order."""
    wanted = {kind for destination in destinations for kind in selected_kinds(destination)}
    return tuple(kind for kind in OUTPUT_KINDS if kind in wanted)


def backoff_seconds(attempt: int, base: float, maximum: float) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped at maximum."""
    return float(min(maximum, base * 2 ** max(0, attempt - 1)))


class Publisher(Protocol):
    """Sends datasets to one destination; raises RetryableError or FinalError with the cause."""

    destination: Destination

    def publish(self, datasets: Sequence[pydicom.Dataset]) -> int: ...


# DIMSE C-STORE statuses worth retrying: Refused: Out of Resources (PS3.4 B.2.3).
_RETRYABLE_STORE_STATUS = range(0xA700, 0xA800)


class DicomWebPublisher:
    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.client = DicomWebClient(destination, timeout=destination.timeout_seconds)

    def publish(self, datasets: Sequence[pydicom.Dataset]) -> int:
        outcome = self.client.store(datasets)
        if outcome.failed:
            reasons = ", ".join(f"0x{reason:04X}" for _, reason in outcome.failed)
            error = f"STOW-RS refused {len(outcome.failed)} of {len(datasets)} objects ({reasons})"
            if all(reason in _RETRYABLE_STORE_STATUS for _, reason in outcome.failed):
                raise RetryableError(error)
            raise FinalError(error)
        return len(outcome.stored)


class DimsePublisher:
    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.peer = peer_of(destination)  # loads the TLS files now: a bad path fails at start

    def publish(self, datasets: Sequence[pydicom.Dataset]) -> int:
        outcome = send(self.peer, datasets, timeout=self.destination.timeout_seconds)
        if outcome.failed:
            reasons = ", ".join(f"0x{status:04X}" for _, status in outcome.failed)
            error = f"C-STORE refused {len(outcome.failed)} of {len(datasets)} objects ({reasons})"
            if all(status in _RETRYABLE_STORE_STATUS for _, status in outcome.failed):
                raise RetryableError(error)
            raise FinalError(error)
        return outcome.sent


def publisher_for(destination: Destination) -> Publisher:
    if destination.kind == "dimse":
        return DimsePublisher(destination)
    return DicomWebPublisher(destination)


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
        store: JobStore,
        publishers: Sequence[Publisher],
        outbox_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = store.engine
        self.clock = clock
        self.outbox_dir = outbox_dir
        self.publishers = {p.destination.name: p for p in publishers}
        self.kinds = {name: selected_kinds(p.destination) for name, p in self.publishers.items()}

    @property
    def wanted_kinds(self) -> tuple[str, ...]:
        return union_of_kinds([p.destination for p in self.publishers.values()])

    # -- the publish stage ----------------------------------------------------------------

    def deliver_job(self, job_id: int, outputs: Sequence[Output]) -> list[Delivery]:
        """Put the outputs in the outbox, plan one delivery per destination and try each
        pending one once now. Delivered and dead-lettered ones are left alone."""
        self._write_outbox(job_id, outputs)
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
        """An administrator sends a dead-lettered delivery again (fresh attempts)."""
        delivery = self.get(job_id, destination)
        check_transition(delivery.state, DeliveryState.RETRY)
        if not self._job_outbox(job_id).is_dir():
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
            self._update(
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
        if not self._claim(delivery, attempt, self.clock() + hold):
            return
        try:
            datasets = self._read_outbox(delivery.job_id, delivery.kinds)
            sent = publisher.publish(datasets) if datasets else 0
        except (RetryableError, OSError) as error:
            self._failed(delivery, attempt, f"{type(error).__name__}: {error}", final=False)
            return
        except FinalError as error:
            self._failed(delivery, attempt, f"{type(error).__name__}: {error}", final=True)
            return
        self._update(
            delivery, DeliveryState.DELIVERED, attempts=attempt, sent=sent, last_error=None
        )
        log.info(
            "results delivered",
            extra={"job_id": delivery.job_id, "destination": delivery.destination, "sent": sent},
        )

    def _failed(self, delivery: Delivery, attempt: int, reason: str, *, final: bool) -> None:
        destination = self.publishers[delivery.destination].destination
        dead = final or attempt >= delivery.max_attempts
        if dead and not final:
            reason = f"{reason} (dead-lettered after {attempt} attempts)"
        wait = backoff_seconds(
            attempt, destination.backoff_seconds, destination.backoff_max_seconds
        )
        self._update(
            delivery,
            DeliveryState.DEAD_LETTER if dead else DeliveryState.RETRY,
            attempts=attempt,
            next_attempt_at=self.clock() + (0.0 if dead else wait),
            last_error=reason,
        )
        log.warning(
            "delivery attempt failed",
            extra={
                "job_id": delivery.job_id,
                "destination": delivery.destination,
                "attempt": attempt,
                "state": "dead_letter" if dead else "retry",
            },
        )

    def _claim(self, delivery: Delivery, attempt: int, hold_until: float) -> bool:
        with self.engine.begin() as connection:
            updated = connection.execute(
                deliveries_table.update()
                .where(deliveries_table.c.id == delivery.id)
                .where(deliveries_table.c.attempts == delivery.attempts)
                .where(deliveries_table.c.state.in_([s.value for s in SENDABLE]))
                .values(next_attempt_at=hold_until, updated_at=self.clock())
            )
        return bool(updated.rowcount == 1)

    def _update(self, delivery: Delivery, target: DeliveryState, **values: Any) -> None:
        check_transition(delivery.state, target)
        with self.engine.begin() as connection:
            connection.execute(
                deliveries_table.update()
                .where(deliveries_table.c.id == delivery.id)
                .where(deliveries_table.c.state == delivery.state.value)
                .values(state=target.value, updated_at=self.clock(), **values)
            )

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
        for delivery in self.for_job(job_id):
            if delivery.destination == destination:
                return delivery
        raise KeyError(f"no delivery of job {job_id} to {destination}")

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

    # -- the outbox -----------------------------------------------------------------------

    def _job_outbox(self, job_id: int) -> Path:
        return self.outbox_dir / f"job-{job_id}"

    def _write_outbox(self, job_id: int, outputs: Sequence[Output]) -> None:
        for output in outputs:
            folder = self._job_outbox(job_id) / output.kind
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{output.dataset.SOPInstanceUID}.dcm"
            partial = target.with_suffix(".part")
            output.dataset.save_as(partial, enforce_file_format=True)
            partial.replace(target)  # atomic: a reader never sees half a file

    def _read_outbox(self, job_id: int, kinds: Sequence[str]) -> list[pydicom.Dataset]:
        datasets: list[pydicom.Dataset] = []
        for kind in kinds:
            folder = self._job_outbox(job_id) / kind
            if not folder.is_dir():
                continue  # this exam has no output of that kind
            for path in sorted(folder.glob("*.dcm")):
                try:
                    datasets.append(pydicom.dcmread(path))
                except InvalidDicomError as error:
                    raise FinalError(f"outbox file {path.name} is not DICOM: {error}") from error
        return datasets

    def _clean_outbox(self, job_id: int, deliveries: Sequence[Delivery]) -> None:
        """Remove the outbox once every destination has the results (kept for dead letters,
        so an administrator can re-send)."""
        if deliveries and all(d.state is DeliveryState.DELIVERED for d in deliveries):
            shutil.rmtree(self._job_outbox(job_id), ignore_errors=True)


def delivery_summary(deliveries: Sequence[Delivery]) -> str:
    """One word for a job's deliveries: the worst state wins."""
    states = {d.state for d in deliveries}
    for state in (D.DEAD_LETTER, D.RETRY, D.PENDING):
        if state in states:
            return state.value
    return D.DELIVERED.value if states else "none"


def echo_destination(destination: Destination) -> str:
    """Prove a destination answers: C-ECHO for DIMSE, a QIDO-RS query for DICOMweb.

    Returns what was checked; raises PeerUnavailable (refused connection, rejected or aborted
    association, server error) or FinalError (authentication failed) naming the cause.
    """
    if destination.kind == "dimse":
        peer = peer_of(destination)
        dimse_echo(peer, timeout=destination.timeout_seconds)
        return f"C-ECHO to {peer} succeeded"
    with DicomWebClient(destination, timeout=destination.timeout_seconds) as client:
        client.echo()
    return f"QIDO-RS on {destination.url} succeeded"
