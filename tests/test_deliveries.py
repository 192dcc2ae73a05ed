"""Deliveries without a network: publishers that stand in for a destination and for a
second worker acting at the worst moment. The real peers are in test_destinations.py."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from node.config import Destination
from node.db import create_engine, deliveries_table
from node.delivery.service import Deliveries, Delivery
from node.delivery.states import DeliveryState
from node.dicom.part10 import Part10File
from node.errors import InvalidTransition, NotFound, RetryableError
from node.jobs.store import JobStore
from node.synthetic.dicom import synthetic_exam
from node.writers.outputs import Output


class StandIn:
    """A destination's publisher that counts what it sends and can act meanwhile."""

    def __init__(self, name: str, during: Callable[[], None] = lambda: None) -> None:
        self.destination = Destination(
            name=name, url="http://127.0.0.1:9/dicom-web", backoff_seconds=0.0
        )
        self.during = during
        self.sent: list[int] = []
        self.fail_next = False

    def publish(self, files: Sequence[Part10File]) -> int:
        if self.fail_next:
            self.fail_next = False
            raise RetryableError("peer down")
        self.during()
        self.sent.append(len(files))
        return len(files)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return create_engine(f"sqlite:///{tmp_path / 'jobs.sqlite'}")


def new_job(engine: Engine) -> int:
    job, _ = JobStore(engine).create_job(
        idempotency_key="k", study_instance_uid="1.2.3", model_ref="m/1", payload={}, max_attempts=1
    )
    return job.id


def outputs() -> list[Output]:
    return [Output("seg", ds) for ds, _ in synthetic_exam(7, rows=64, columns=64)[:1]]


def test_outcome_that_lost_its_compare_and_set_is_reported_not_logged_as_delivered(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def another_worker_settles_it() -> None:
        with engine.begin() as connection:
            connection.execute(
                deliveries_table.update().values(
                    state=DeliveryState.DEAD_LETTER.value, last_error="settled elsewhere"
                )
            )

    job_id = new_job(engine)
    publisher = StandIn("pacs", during=another_worker_settles_it)
    deliveries = Deliveries(engine, [publisher], tmp_path / "outbox")
    caplog.set_level(logging.INFO, logger="node.delivery.service")

    [delivery] = deliveries.deliver_job(job_id, outputs())

    assert publisher.sent == [1]
    assert delivery.state is DeliveryState.DEAD_LETTER  # the other worker's outcome stands
    assert delivery.last_error == "settled elsewhere"
    messages = [record.getMessage() for record in caplog.records]
    assert "results delivered" not in messages
    assert any(m.startswith("delivery outcome not recorded") for m in messages), messages


def test_a_second_worker_with_a_stale_read_cannot_claim_the_same_attempt(
    engine: Engine, tmp_path: Path
) -> None:
    job_id = new_job(engine)
    stale: list[Delivery] = []
    second: list[Deliveries] = []
    publisher = StandIn("pacs", during=lambda: second[0]._attempt(stale[0]))
    first = Deliveries(engine, [publisher], tmp_path / "outbox")
    second.append(Deliveries(engine, [publisher], tmp_path / "outbox"))

    publisher.fail_next = True
    first.deliver_job(job_id, outputs())
    stale.append(first.get(job_id, "pacs"))  # the second worker read it, due for a retry
    assert stale[0].state is DeliveryState.RETRY

    assert first.run_due() == 1  # while it sends, the second worker tries the same row

    assert publisher.sent == [1]  # sent once, not twice
    assert first.get(job_id, "pacs").state is DeliveryState.DELIVERED


def test_unknown_delivery_is_not_found_and_a_delivered_one_cannot_be_resent(
    engine: Engine, tmp_path: Path
) -> None:
    job_id = new_job(engine)
    deliveries = Deliveries(engine, [StandIn("pacs")], tmp_path / "outbox")
    with pytest.raises(NotFound, match="no delivery of job 999 to pacs"):
        deliveries.get(999, "pacs")
    deliveries.deliver_job(job_id, outputs())
    with pytest.raises(InvalidTransition, match="from delivered to retry"):
        deliveries.resend(job_id, "pacs")


def test_a_node_process_without_the_outbox_never_counts_a_retry_as_delivered(
    engine: Engine, tmp_path: Path
) -> None:
    """Two node processes on one job store but separate data folders (not the chart's shared
    volume): the one without the job's outbox fails the attempt with the reason, and the
    one holding it delivers; nothing is marked delivered without being sent."""
    job_id = new_job(engine)
    publisher = StandIn("pacs")
    writer = Deliveries(engine, [publisher], tmp_path / "a" / "outbox")
    other = Deliveries(engine, [publisher], tmp_path / "b" / "outbox")
    publisher.fail_next = True
    writer.deliver_job(job_id, outputs())  # first attempt fails: due for a retry

    assert other.run_due() == 1
    after = other.get(job_id, "pacs")
    assert after.state is DeliveryState.RETRY
    assert after.sent == 0 and publisher.sent == []
    assert "outbox of job" in str(after.last_error) and "data folder" in str(after.last_error)

    assert writer.run_due() == 1
    delivered = writer.get(job_id, "pacs")
    assert (delivered.state, delivered.sent, publisher.sent) == (DeliveryState.DELIVERED, 1, [1])
