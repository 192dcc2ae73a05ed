"""What a restarting node reclaims, fast: only the leases of its own earlier run (worker ids
that start with its identity), and only while it holds its data dir's lock."""

from __future__ import annotations

from pathlib import Path

from node.jobs.states import JobState
from node.jobs.store import JobStore
from node.jobs.worker import new_worker_id
from node.runtime.node import lock_data_dir, node_identity
from tests.memory import Clock, job_store


def leased_job(store: JobStore, key: str, worker: str) -> int:
    job, _ = store.create_job(
        idempotency_key=key,
        study_instance_uid="1.2.3",
        model_ref="demo/1.0.0",
        payload={"orthanc_study_id": key, "instances": []},
        max_attempts=3,
    )
    leased = store.lease(worker, 300.0)
    assert leased is not None and leased.id == job.id
    return job.id


def test_only_the_leases_of_this_nodes_earlier_run_are_released(tmp_path: Path) -> None:
    clock = Clock()
    store = job_store(tmp_path, clock)
    identity = node_identity(tmp_path)
    ours = leased_job(store, "a", new_worker_id(identity))
    # A neighbour whose identity differs only where LIKE would see a wildcard.
    neighbour = leased_job(store, "b", new_worker_id(identity.replace(":", "_", 1)))
    released = store.release_leases(identity + "/", "node restarted on the same data dir")
    assert [job.id for job in released] == [ours]
    mine = store.get(ours)
    assert (mine.state, mine.lease_owner, mine.next_attempt_at) == (JobState.RETRY, None, clock.now)
    assert mine.last_error is not None and "expired with its node" in mine.last_error
    assert store.get(neighbour).state is JobState.FETCHING


def test_the_data_dir_lock_is_held_by_one_node_at_a_time(tmp_path: Path) -> None:
    first = lock_data_dir(tmp_path)
    assert first is not None
    assert lock_data_dir(tmp_path) is None  # a live node holds it
    first.close()  # as when that node dies
    again = lock_data_dir(tmp_path)
    assert again is not None
    again.close()
