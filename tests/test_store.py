"""The job store on a real SQLite file (WAL): leases, compare-and-set, audit trail."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from node.db import create_engine
from node.errors import InvalidTransition, LeaseLost, NotFound
from node.jobs.states import JobState, check_transition
from node.jobs.store import JobStore
from tests.postgres import postgres_server


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.sqlite'}"
        return
    base: str = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"jobs_{uuid.uuid4().hex[:12]}"
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    yield base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def store(database_url: str, clock: Clock) -> Iterator[JobStore]:
    store = JobStore(create_engine(database_url), clock=clock)
    yield store
    store.engine.dispose()


def new_job(store: JobStore, key: str = "k1", max_attempts: int = 3) -> int:
    job, created = store.create_job(
        idempotency_key=key,
        study_instance_uid="1.2.3",
        model_ref="m/1",
        payload={"instances": []},
        max_attempts=max_attempts,
    )
    assert created
    return job.id


def test_wal_mode(store: JobStore) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("WAL is SQLite's")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_same_key_gives_the_same_job(store: JobStore) -> None:
    first = new_job(store)
    again, created = store.create_job(
        idempotency_key="k1",
        study_instance_uid="1.2.3",
        model_ref="m/1",
        payload={},
        max_attempts=3,
    )
    assert not created and again.id == first
    assert len(store.list_jobs()) == 1


def test_full_run_is_recorded(store: JobStore) -> None:
    new_job(store)
    job = store.lease("w1", 10)
    assert job is not None and job.state is JobState.FETCHING and job.attempts == 1
    for target in (JobState.INFERRING, JobState.WRITING, JobState.PUBLISHING, JobState.DONE):
        job = store.advance(
            job,
            target,
            worker="w1",
            lease_seconds=10,
            result={"score": 0.5} if target is JobState.DONE else None,
        )
    assert job.result == {"score": 0.5} and job.lease_owner is None
    assert [e.to_state for e in store.history(job.id)] == [
        "received",
        "queued",
        "fetching",
        "inferring",
        "writing",
        "publishing",
        "done",
    ]
    assert store.counts_by_state()[JobState.DONE] == 1


def test_one_job_one_owner(store: JobStore) -> None:
    new_job(store)
    assert store.lease("w1", 10) is not None
    assert store.lease("w2", 10) is None


def test_expired_lease_is_taken_over_and_the_old_owner_is_stopped(
    store: JobStore, clock: Clock
) -> None:
    new_job(store)
    first = store.lease("w1", 10)
    assert first is not None
    first = store.advance(first, JobState.INFERRING, worker="w1", lease_seconds=10)
    clock.now += 11
    second = store.lease("w2", 10)
    assert second is not None and second.lease_owner == "w2" and second.attempts == 2
    reasons = [e.reason for e in store.history(second.id)]
    assert any("lease of w1 expired in inferring" in (r or "") for r in reasons)
    with pytest.raises(LeaseLost):
        store.advance(first, JobState.WRITING, worker="w1", lease_seconds=10)


def test_retry_waits_for_its_backoff(store: JobStore, clock: Clock) -> None:
    new_job(store)
    job = store.lease("w1", 10)
    assert job is not None
    retried = store.give_up(job, worker="w1", reason="peer down", retryable=True, backoff=5)
    assert retried.state is JobState.RETRY and retried.last_error == "peer down"
    assert store.lease("w1", 10) is None
    clock.now += 5
    assert store.lease("w1", 10) is not None


def test_last_attempt_fails_for_good(store: JobStore) -> None:
    new_job(store, max_attempts=1)
    job = store.lease("w1", 10)
    assert job is not None
    failed = store.give_up(job, worker="w1", reason="peer down", retryable=True, backoff=1)
    assert failed.state is JobState.FAILED
    assert "gave up after 1 attempts" in (failed.last_error or "")


def test_final_error_does_not_retry(store: JobStore) -> None:
    new_job(store)
    job = store.lease("w1", 10)
    assert job is not None
    failed = store.give_up(job, worker="w1", reason="corrupt", retryable=False, backoff=1)
    assert failed.state is JobState.FAILED and failed.attempts == 1


def test_requeue_only_from_failed(store: JobStore) -> None:
    job_id = new_job(store)
    with pytest.raises(InvalidTransition):
        store.requeue(job_id)
    job = store.lease("w1", 10)
    assert job is not None
    store.give_up(job, worker="w1", reason="x", retryable=False, backoff=0)
    assert store.requeue(job_id).state is JobState.QUEUED


def test_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFound, match="no job 999"):
        store.get(999)
    with pytest.raises(NotFound, match="no job 999"):
        store.requeue(999)


def test_regrouping_a_queued_job_records_no_forbidden_transition(store: JobStore) -> None:
    job = store.get(new_job(store))
    regrouped = store.regroup_queued(
        job,
        idempotency_key="k1+",
        payload={"instances": [1, 2]},
        not_before=2_000.0,
        reason="exam grew to 2 images",
    )
    assert regrouped is not None and regrouped.state is JobState.QUEUED
    assert regrouped.payload == {"instances": [1, 2]} and regrouped.next_attempt_at == 2_000.0
    history = store.history(job.id)
    assert [(e.from_state, e.to_state) for e in history] == [
        (None, "received"),
        ("received", "queued"),
    ]
    for event in history[1:]:  # every row of the trail is a move the table allows
        check_transition(JobState(event.from_state), JobState(event.to_state))


def test_routing_decisions_are_recorded_once(store: JobStore) -> None:
    kwargs = dict(
        study_instance_uid="1.2",
        series_instance_uid="1.2.3",
        decision="ignored",
        reason="Modality CT is not routed",
        instances=2,
    )
    assert store.record_routing(**kwargs)  # type: ignore[arg-type]
    assert not store.record_routing(**kwargs)  # type: ignore[arg-type]
    assert store.routing_decisions("1.2")[0]["reason"] == "Modality CT is not routed"


def test_listeners_cannot_fail_a_job(store: JobStore) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("metrics exploded")

    store.subscribe(broken)
    new_job(store)
    assert store.lease("w1", 10) is not None


def test_node_state(store: JobStore) -> None:
    assert store.get_state("seq") is None
    store.set_state("seq", "5")
    store.set_state("seq", "7")
    assert store.get_state("seq") == "7"


def test_claimed_node_state_keeps_the_first_value(store: JobStore) -> None:
    """An exam's results study: the first intake to record it wins, the others read it."""
    key = "exam results study " + "a" * 40
    assert store.claim_state(key, "1.2.3") == "1.2.3"
    assert store.claim_state(key, "1.2.4") == "1.2.3"
    assert store.get_state(key) == "1.2.3"


def test_concurrent_workers_never_share_a_job(store: JobStore) -> None:
    """Four workers lease 40 jobs at once: every job is leased exactly once."""
    for index in range(40):
        new_job(store, key=f"job-{index}")
    leased: dict[str, list[int]] = {f"w{n}": [] for n in range(4)}

    def work(worker: str) -> None:
        for _ in range(200):  # bounded
            job = store.lease(worker, 60)
            if job is None:
                return
            leased[worker].append(job.id)

    threads = [threading.Thread(target=work, args=(w,)) for w in leased]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [job_id for ids in leased.values() for job_id in ids]
    assert sorted(everything) == sorted(set(everything))
    assert len(everything) == 40
