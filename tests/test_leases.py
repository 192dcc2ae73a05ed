"""Leases across real processes: two workers on one SQLite job store. A stage that outlasts
the lease keeps it (the heartbeat), so the second worker never starts the job; a worker
that froze past its lease loses it, stops with LeaseLost and never publishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from node.db import create_engine
from node.jobs.states import JobState
from node.jobs.store import JobStore
from tests.harness import wait_for

ROOT = Path(__file__).resolve().parent.parent
LEASE = 1.0


def start_worker(
    url: str, name: str, published: Path, *, infer_seconds: float, wait: float = 15.0
) -> subprocess.Popen[str]:
    """A worker process, ready (its imports take seconds): it starts at ``go(...)``."""
    go = published.parent / f"go-{name}"
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "lease_worker.py"),
            url,
            name,
            f"--lease={LEASE}",
            f"--infer-seconds={infer_seconds}",
            f"--published={published}",
            f"--wait={wait}",
            f"--go={go}",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def go(published: Path, name: str) -> None:
    (published.parent / f"go-{name}").touch()


def outcome(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def one_job(tmp_path: Path) -> tuple[str, JobStore, int]:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    store = JobStore(create_engine(url))
    job, _ = store.create_job(
        idempotency_key="k1",
        study_instance_uid="1.2.3",
        model_ref="demo/1.0.0",
        payload={"orthanc_study_id": "s1", "instances": []},
        max_attempts=3,
    )
    return url, store, job.id


def test_a_stage_longer_than_the_lease_keeps_the_job_to_its_worker(tmp_path: Path) -> None:
    url, store, job_id = one_job(tmp_path)
    published = tmp_path / "published"
    first = start_worker(url, "w1", published, infer_seconds=4 * LEASE)
    second = start_worker(url, "w2", published, infer_seconds=0.0, wait=5 * LEASE)
    go(published, "w1")
    wait_for("w1 to start inferring", lambda: store.get(job_id).state is JobState.INFERRING, 30)
    go(published, "w2")
    one, two = outcome(first), outcome(second)
    assert published.read_text().splitlines() == ["w1"]  # exactly one result set
    assert one == {"worker": "w1", "job": job_id, "state": "done", "lease_lost": False}
    assert two == {"worker": "w2", "job": None, "lease_lost": False}
    job = store.get(job_id)
    assert (job.state, job.attempts) == (JobState.DONE, 1)


def test_a_worker_that_lost_its_lease_stops_and_never_publishes(tmp_path: Path) -> None:
    url, store, job_id = one_job(tmp_path)
    published = tmp_path / "published"
    loser = start_worker(url, "w1", published, infer_seconds=LEASE)
    winner = start_worker(url, "w2", published, infer_seconds=0.0)
    go(published, "w1")
    wait_for("w1 to start inferring", lambda: store.get(job_id).state is JobState.INFERRING, 30)
    loser.send_signal(signal.SIGSTOP)  # frozen: no heartbeat, the lease runs out
    try:
        time.sleep(LEASE * 1.5)
        go(published, "w2")
        assert outcome(winner) == {
            "worker": "w2",
            "job": job_id,
            "state": "done",
            "lease_lost": False,
        }
    finally:
        loser.send_signal(signal.SIGCONT)
    lost = outcome(loser)
    assert lost["lease_lost"] is True and lost["state"] != "done"
    assert published.read_text().splitlines() == ["w2"]
    history = [(e.to_state, e.worker) for e in store.history(job_id)]
    assert ("done", "w2") in history and ("done", "w1") not in history
