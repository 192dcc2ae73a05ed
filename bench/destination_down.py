"""Destination figure: a PACS down for 5 minutes and for 2 hours, on a simulated clock.

The node's own delivery service (node.delivery.service, its outbox and its SQLite table)
publishes one exam's results by DIMSE C-STORE to a real pynetdicom Storage SCP on 127.0.0.1.
At t=0 the SCP is stopped (connection refused); when the outage ends it is started again on
the same port. Only the clock is simulated: it jumps to each retry's ``next_attempt_at``, so
the real backoff schedule (``node.retry.backoff_seconds``, the destination's
``backoff_seconds``, ``backoff_max_seconds`` and ``max_attempts``) is walked through in
seconds of wall time, and every attempt is a real association.

For each outage and setting it prints when each attempt ran and how it ended, the
``mammo_node_deliveries`` gauge the node's /metrics serves at that moment (the
``MammoNodeDeadLetters`` alert of the Helm chart fires on its dead_letter series), and,
for a dead letter, the administrator's resend (the call behind ``POST
/api/v1/jobs/{id}/deliveries/{dest}/resend`` and ``mammo-node resend``) after the PACS is
back. Bounded: at most 100 attempts per scenario; 127.0.0.1 only.

    .venv/bin/python bench/destination_down.py [--outages 300 7200]
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from prometheus_client import generate_latest
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.transport import ThreadedAssociationServer

from node.config import Destination
from node.db import create_engine
from node.delivery.publishers import DimsePublisher
from node.delivery.service import Deliveries, Delivery
from node.delivery.states import DeliveryState
from node.jobs.store import JobStore
from node.observability.metrics import NodeMetrics
from node.synthetic.dicom import synthetic_exam
from node.writers.outputs import Output

MAX_ATTEMPTS_WALKED = 100
AET = "PACS2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Pacs:
    """A Storage SCP that can be stopped and started again on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None

    def _on_store(self, event: evt.Event) -> int:
        with self._lock:
            self.received.add(str(event.dataset.SOPInstanceUID))
        return 0x0000

    def start(self) -> None:
        ae = AE(ae_title=AET)
        ae.require_called_aet = True
        ae.add_supported_context(pydicom.uid.DigitalMammographyXRayImageStorageForPresentation)
        for context in ae.supported_contexts:
            context.transfer_syntax = list(ALL_TRANSFER_SYNTAXES)
        self._server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Scenario:
    outage: float
    max_attempts: int
    backoff: float
    backoff_max: float
    attempts: list[tuple[float, str]] = field(default_factory=list)  # (t, state after)
    gauge: str = ""
    ended: str = ""
    resent: str = ""
    received: int = 0


def outputs() -> list[Output]:
    return [Output("seg", ds) for ds, _ in synthetic_exam(7, rows=64, columns=64)[:2]]


def run_scenario(scenario: Scenario, folder: Path) -> Scenario:
    clock, pacs = Clock(), Pacs()
    destination = Destination(
        name="pacs2",
        kind="dimse",
        host="127.0.0.1",
        port=pacs.port,
        called_aet=AET,
        max_attempts=scenario.max_attempts,
        backoff_seconds=scenario.backoff,
        backoff_max_seconds=scenario.backoff_max,
        timeout_seconds=10.0,
    )
    engine = create_engine(f"sqlite:///{folder / 'jobs.sqlite'}")
    store = JobStore(engine)
    job, _ = store.create_job(
        idempotency_key="outage",
        study_instance_uid="1.2.3",
        model_ref="m/1",
        payload={},
        max_attempts=1,
    )
    deliveries = Deliveries(engine, [DimsePublisher(destination)], folder / "outbox", clock=clock)
    metrics = NodeMetrics(store.counts_by_state)
    metrics.watch_deliveries(deliveries.counts)
    try:
        (delivery,) = deliveries.deliver_job(job.id, outputs())  # the PACS is down at t=0
        scenario.attempts.append((clock.now, delivery.state.value))
        for _ in range(MAX_ATTEMPTS_WALKED):
            if delivery.state is not DeliveryState.RETRY:
                break
            clock.now = max(clock.now, delivery.next_attempt_at)
            if clock.now >= scenario.outage and not pacs.received and not pacs.running:
                pacs.start()
            deliveries.run_due()
            delivery = deliveries.get(job.id, destination.name)
            scenario.attempts.append((clock.now, delivery.state.value))
        scenario.gauge = _gauge(metrics, delivery)
        scenario.ended = delivery.state.value
        if delivery.state is DeliveryState.DEAD_LETTER:
            clock.now = max(clock.now, scenario.outage) + 60.0  # an administrator, later
            if not pacs.running:
                pacs.start()
            deliveries.resend(job.id, destination.name)
            deliveries.run_due()
            after = deliveries.get(job.id, destination.name)
            scenario.resent = f"{after.state.value} at t={clock.now:.0f} s"
        scenario.received = len(pacs.received)
    finally:
        pacs.stop()
        engine.dispose()
    return scenario


def _gauge(metrics: NodeMetrics, delivery: Delivery) -> str:
    text = generate_latest(metrics.registry).decode()
    wanted = f'destination="{delivery.destination}",state="{delivery.state.value}"'
    return next((line for line in text.splitlines() if wanted in line), "")


def print_scenario(scenario: Scenario) -> None:
    print(
        f"\nPACS down {scenario.outage:.0f} s; max_attempts {scenario.max_attempts}, backoff "
        f"{scenario.backoff:g} s doubling to {scenario.backoff_max:g} s"
    )
    times = ", ".join(f"{t:.0f}" for t, _state in scenario.attempts)
    print(f"  attempts at t = {times} s")
    last = scenario.attempts[-1][0]
    late = f"{last - scenario.outage:.0f} s after the PACS came back"
    if scenario.ended == "delivered":
        print(f"  delivered at t={last:.0f} s ({late}), {scenario.received} instances received")
    else:
        print(f"  {scenario.ended} at t={last:.0f} s, before the PACS came back")
        print(f"  resend by an administrator: {scenario.resent}, {scenario.received} received")
    print(f"  metric when the retries ended: {scenario.gauge}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--outages", type=float, nargs="+", default=[300.0, 7200.0], help="seconds down"
    )
    parser.add_argument(
        "--short-attempts",
        type=int,
        default=5,
        help="max_attempts of the second setting compared with the defaults (1-100)",
    )
    args = parser.parse_args()
    logging.getLogger("node").setLevel(logging.ERROR)  # each failed attempt logs a warning
    defaults = Destination(name="d", url="http://127.0.0.1/")
    settings = [
        (defaults.max_attempts, defaults.backoff_seconds, defaults.backoff_max_seconds),
        (args.short_attempts, defaults.backoff_seconds, defaults.backoff_max_seconds),
    ]
    delivered_or_resent = True
    for outage in args.outages:
        for attempts, backoff, cap in settings:
            with tempfile.TemporaryDirectory() as folder:
                scenario = run_scenario(Scenario(outage, attempts, backoff, cap), Path(folder))
            print_scenario(scenario)
            delivered_or_resent &= scenario.received == len(outputs())
    return 0 if delivered_or_resent else 1


if __name__ == "__main__":
    sys.exit(main())
