"""One worker as a process of its own, for the lease tests (tests/test_leases.py): stand-in
stages on a real job store; ``inferring`` takes ``--infer-seconds``; ``publishing`` appends
the worker's id to ``--published``. Prints one JSON line: what became of the job it held.

    python tests/lease_worker.py DB_URL WORKER_ID --lease 1 --infer-seconds 4 --published F --go F
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from node.db import create_engine
from node.domain import ExamResult, ModelSpec
from node.events import EventBus
from node.jobs.pipeline import ExamWork
from node.jobs.store import JobStore
from node.jobs.worker import Worker, WorkerOptions

SPEC = ModelSpec("demo", "1.0.0", "Demo", "test", "2.25.1", "research", "none", 0.5, 0.5, (64, 52))


class SlowStages:
    def __init__(self, worker_id: str, infer_seconds: float, published: Path) -> None:
        self.worker_id = worker_id
        self.infer_seconds = infer_seconds
        self.published = published

    def fetch(self, work: ExamWork) -> None:
        pass

    def infer(self, work: ExamWork) -> None:
        time.sleep(self.infer_seconds)
        work.exam = ExamResult(work.job.study_instance_uid, SPEC, images=[])

    def write(self, work: ExamWork) -> None:
        pass

    def publish(self, work: ExamWork) -> None:
        with self.published.open("a") as out:
            out.write(self.worker_id + "\n")


class LeaseLostSeen(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        self.seen = self.seen or "lease lost" in record.getMessage()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("worker_id")
    parser.add_argument("--lease", type=float, required=True)
    parser.add_argument("--infer-seconds", type=float, required=True)
    parser.add_argument("--published", type=Path, required=True)
    parser.add_argument("--wait", type=float, default=10.0, help="give up when no job comes")
    parser.add_argument("--go", type=Path, required=True, help="start once this file exists")
    args = parser.parse_args()
    seen = LeaseLostSeen()
    logging.getLogger("node.jobs.worker").addHandler(seen)
    store = JobStore(create_engine(args.database_url))
    options = WorkerOptions(
        lease_seconds=args.lease, backoff_seconds=0.1, backoff_max_seconds=0.1, poll_seconds=0.05
    )
    worker = Worker(
        store,
        SlowStages(args.worker_id, args.infer_seconds, args.published),
        EventBus(),
        options,
        worker_id=args.worker_id,
    )
    print("ready", flush=True)  # imports done: the test decides when this worker starts
    while not args.go.exists():
        time.sleep(0.02)
    deadline = time.monotonic() + args.wait
    outcome: dict[str, object] = {"worker": args.worker_id, "job": None}
    while time.monotonic() < deadline:
        job = worker.run_once()
        if job is not None:
            outcome = {"worker": args.worker_id, "job": job.id, "state": job.state.value}
            break
        time.sleep(options.poll_seconds)
    outcome["lease_lost"] = seen.seen
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
