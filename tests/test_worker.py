"""The worker loop, fast: a real job store on SQLite and stand-in stages (no Orthanc, no
model). A job runs its stages in order to done; a RetryableError goes to retry with
exponential backoff, a FinalError to failed, and a lost lease stops the job untouched."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from node.domain import ExamResult, ExamSummary, ModelSpec
from node.errors import InvalidInput, PeerUnavailable
from node.events import EventBus, JobFailed, StageFinished
from node.jobs.pipeline import ExamWork
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore
from node.jobs.worker import Doorbell, ExamStages, Worker, WorkerOptions
from tests.memory import Clock, job_store

OPTIONS = WorkerOptions(
    lease_seconds=30.0, backoff_seconds=5.0, backoff_max_seconds=12.0, poll_seconds=0.01
)
SPEC = ModelSpec("demo", "1.0.0", "Demo", "test", "2.25.1", "research", "none", 0.5, 0.5, (64, 52))


class Stages:
    """ExamStages stand-in: records each stage; ``fail`` makes a stage raise, ``hooks``
    run something while a stage is under way (another worker, a clock that jumps)."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.fail: dict[str, Exception] = {}
        self.hooks: dict[str, Callable[[], object]] = {}

    def _run(self, name: str) -> None:
        self.ran.append(name)
        if name in self.hooks:
            self.hooks[name]()
        if name in self.fail:
            raise self.fail[name]

    def fetch(self, work: ExamWork) -> None:
        self._run("fetch")

    def infer(self, work: ExamWork) -> None:
        self._run("infer")
        work.exam = ExamResult(work.job.study_instance_uid, SPEC, images=[])

    def write(self, work: ExamWork) -> None:
        self._run("write")

    def publish(self, work: ExamWork) -> None:
        self._run("publish")
        work.published = {"pacs": 0}


class Events:
    def __init__(self, bus: EventBus) -> None:
        self.failed: list[JobFailed] = []
        self.stages: list[StageFinished] = []
        bus.subscribe(JobFailed, self.failed.append)
        bus.subscribe(StageFinished, self.stages.append)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> JobStore:
    return job_store(tmp_path, clock)


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


def new_job(store: JobStore, key: str = "k1", max_attempts: int = 3) -> Job:
    job, _ = store.create_job(
        idempotency_key=key,
        study_instance_uid="1.2.3",
        model_ref=SPEC.ref,
        payload={"orthanc_study_id": "s1", "instances": []},
        max_attempts=max_attempts,
    )
    return job


def worker(store: JobStore, stages: ExamStages, bus: EventBus, name: str = "w1") -> Worker:
    return Worker(store, stages, bus, OPTIONS, worker_id=name)


class TestDone:
    def test_a_job_runs_every_stage_in_order_to_done(self, store: JobStore, bus: EventBus) -> None:
        events, stages = Events(bus), Stages()
        job = new_job(store)
        done = worker(store, stages, bus).run_once()
        assert done is not None and done.id == job.id and done.state is JobState.DONE
        assert stages.ran == ["fetch", "infer", "write", "publish"]
        assert [e.to_state for e in store.history(job.id)] == [
            "received",
            "queued",
            "fetching",
            "inferring",
            "writing",
            "publishing",
            "done",
        ]
        assert [e.stage for e in events.stages] == [
            "fetching",
            "inferring",
            "writing",
            "publishing",
        ]
        stored = store.get(job.id)
        assert stored.lease_owner is None and stored.attempts == 1
        summary = ExamSummary.from_json(stored.result)
        assert (summary.model, summary.published, summary.images) == ("demo/1.0.0", {"pacs": 0}, ())

    def test_no_due_job_means_nothing_to_do(self, store: JobStore, bus: EventBus) -> None:
        assert worker(store, Stages(), bus).run_once() is None

    def test_the_loop_stops_when_asked(self, store: JobStore, bus: EventBus) -> None:
        stop, stages = threading.Event(), Stages()
        stages.hooks["publish"] = stop.set
        job = new_job(store)
        worker(store, stages, bus).run(stop)  # returns once the job is done and stop is set
        assert store.get(job.id).state is JobState.DONE

    def test_a_ring_wakes_an_idle_worker_before_its_poll(
        self, store: JobStore, bus: EventBus
    ) -> None:
        """With an hour's poll, only the doorbell can start a job queued while it waits."""

        class WatchedDoorbell(Doorbell):
            def __init__(self) -> None:
                super().__init__()
                self.waiting = threading.Event()

            def wait(self, seconds: float) -> bool:
                self.waiting.set()
                return super().wait(seconds)

        stop, doorbell, stages = threading.Event(), WatchedDoorbell(), Stages()
        slow_poll = WorkerOptions(
            lease_seconds=30.0, backoff_seconds=5.0, backoff_max_seconds=12.0, poll_seconds=3600
        )
        idle = Worker(store, stages, bus, slow_poll, worker_id="w1", doorbell=doorbell)
        thread = threading.Thread(target=idle.run, args=(stop,), daemon=True)
        thread.start()
        try:
            finished = threading.Event()
            stages.hooks["publish"] = finished.set
            assert doorbell.waiting.wait(60), "the worker never went idle"
            job = new_job(store)  # after the worker found nothing and went to sleep
            doorbell.ring()
            assert finished.wait(60), "the ring did not wake the worker"
        finally:
            stop.set()
            doorbell.ring()
            thread.join(60)
        assert not thread.is_alive()
        assert store.get(job.id).state is JobState.DONE


class TestRetry:
    def test_a_retryable_error_goes_to_retry_with_backoff(
        self, store: JobStore, bus: EventBus, clock: Clock
    ) -> None:
        events, stages = Events(bus), Stages()
        stages.fail["fetch"] = PeerUnavailable("Orthanc: connection refused")
        job = new_job(store)
        moved = worker(store, stages, bus).run_once()
        assert moved is not None and moved.state is JobState.RETRY
        assert moved.next_attempt_at == clock.now + 5.0  # the first backoff
        assert moved.last_error == "fetching: PeerUnavailable: Orthanc: connection refused"
        assert stages.ran == ["fetch"]
        assert [(e.job_id, e.category, e.final) for e in events.failed] == [
            (job.id, "PeerUnavailable", False)
        ]

        clock.now += 4.9
        assert worker(store, stages, bus).run_once() is None  # not due before its backoff
        clock.now += 0.1
        again = worker(store, stages, bus).run_once()
        assert again is not None and again.state is JobState.RETRY and again.attempts == 2
        assert again.next_attempt_at == clock.now + 10.0  # doubled

    def test_the_last_retryable_attempt_fails_the_job(
        self, store: JobStore, bus: EventBus, clock: Clock
    ) -> None:
        stages = Stages()
        stages.fail["publish"] = PeerUnavailable("down")
        job = new_job(store, max_attempts=2)
        for _ in range(2):
            moved = worker(store, stages, bus).run_once()
            clock.now += 60
        assert moved is not None and moved.state is JobState.FAILED
        assert store.get(job.id).last_error == (
            "publishing: PeerUnavailable: down (gave up after 2 attempts)"
        )

    def test_an_unexpected_error_is_retried(self, store: JobStore, bus: EventBus) -> None:
        stages = Stages()
        stages.fail["write"] = RuntimeError("bug")
        new_job(store)
        moved = worker(store, stages, bus).run_once()
        assert moved is not None and moved.state is JobState.RETRY
        assert moved.last_error == "writing: RuntimeError: bug"


class TestFailed:
    def test_a_final_error_fails_the_job_at_once(self, store: JobStore, bus: EventBus) -> None:
        events, stages = Events(bus), Stages()
        stages.fail["infer"] = InvalidInput("no usable image in the exam")
        new_job(store)
        moved = worker(store, stages, bus).run_once()
        assert moved is not None and moved.state is JobState.FAILED and moved.attempts == 1
        assert moved.last_error == "inferring: InvalidInput: no usable image in the exam"
        assert stages.ran == ["fetch", "infer"]
        assert [(e.category, e.final) for e in events.failed] == [("InvalidInput", True)]


class TestLeaseLost:
    def test_a_lost_lease_stops_the_job_and_leaves_it_to_the_new_owner(
        self, store: JobStore, bus: EventBus, clock: Clock
    ) -> None:
        events, stages = Events(bus), Stages()
        taken: list[Job | None] = []

        def another_worker_takes_over() -> None:
            clock.now += OPTIONS.lease_seconds + 1  # our lease expires mid-stage ...
            taken.append(store.lease("w2", OPTIONS.lease_seconds))  # ... and w2 leases it

        stages.hooks["infer"] = another_worker_takes_over
        job = new_job(store)
        worker(store, stages, bus, name="w1").run_once()
        assert taken[0] is not None and taken[0].id == job.id
        assert stages.ran == ["fetch", "infer"]  # w1 went no further
        now = store.get(job.id)
        assert (now.state, now.lease_owner, now.attempts) == (JobState.FETCHING, "w2", 2)
        assert events.failed == []  # not a failure: the job goes on with w2
