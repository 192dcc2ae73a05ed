"""Intake, fast: a stable study becomes one exam job (idempotently), with an in-memory
stand-in of the Orthanc methods intake reads and a real job store on SQLite. Exam
assembly (waiting for missing views, regrouping, revisions) runs on a hand-moved clock."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from node.config import RoutingRules
from node.domain import ExamRequest, InstanceRef
from node.events import EventBus, SeriesRouted
from node.ingest.intake import ExamIntake, idempotency_key
from node.jobs.states import JobState
from node.jobs.store import JobStore
from node.writers.provenance import NODE_MANUFACTURER
from tests.memory import Clock, MemoryOrthanc, job_store, small_exam

MODEL = "demo/1.0.0"
TIMEOUT = 60.0


class Harness:
    def __init__(self, folder: Path) -> None:
        self.clock = Clock()
        self.store: JobStore = job_store(folder, self.clock)
        self.orthanc = MemoryOrthanc()
        self.bus = EventBus()
        self.routed: list[SeriesRouted] = []
        self.bus.subscribe(SeriesRouted, self.routed.append)
        self.intake = ExamIntake(
            self.orthanc,
            self.store,
            self.bus,
            RoutingRules(),
            model_ref=MODEL,
            max_attempts=3,
            assembly_timeout=TIMEOUT,
            clock=self.clock,
        )


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.store.engine.dispose()


@pytest.fixture(scope="module")
def exam() -> list[pydicom.Dataset]:
    return small_exam(seed=71)


def request_for(datasets: list[pydicom.Dataset], **values: object) -> ExamRequest:
    refs = sorted(
        (
            InstanceRef(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
            for ds in datasets
        ),
        key=lambda ref: (ref.SeriesInstanceUID, ref.SOPInstanceUID),
    )
    return ExamRequest("study-1", tuple(refs), **values)  # type: ignore[arg-type]


class TestStableStudy:
    def test_a_complete_exam_is_queued_at_once_as_one_job(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        harness.orthanc.store("study-1", exam)
        job = harness.intake.stable_study("study-1")
        assert job is not None and job.state is JobState.QUEUED
        assert job.next_attempt_at == harness.clock.now
        assert (job.study_instance_uid, job.model_ref) == (str(exam[0].StudyInstanceUID), MODEL)
        expected = request_for(exam, views=("L CC", "L MLO", "R CC", "R MLO"))
        assert job.payload == expected.to_json()
        uids = [str(ds.SOPInstanceUID) for ds in exam]
        assert job.idempotency_key == idempotency_key(job.study_instance_uid, MODEL, uids)
        decisions = harness.store.routing_decisions(job.study_instance_uid)
        assert {d["decision"] for d in decisions} == {"routed"}
        assert sum(d["instances"] for d in decisions) == 4
        assert sum(event.instances for event in harness.routed) == 4

    def test_the_same_study_again_is_the_same_job(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        harness.orthanc.store("study-1", exam)
        first = harness.intake.stable_study("study-1")
        harness.clock.now += 5
        again = harness.intake.stable_study("study-1")
        assert first is not None and again is not None and again.id == first.id
        assert len(harness.store.list_jobs()) == 1
        assert len(harness.routed) == len(decisions := harness.store.routing_decisions())
        assert decisions  # each series' decision recorded once

    def test_a_study_with_nothing_routed_makes_no_job(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        other = [copy.deepcopy(exam[0])]
        other[0].Modality = "CT"
        harness.orthanc.store("study-ct", other)
        assert harness.intake.stable_study("study-ct") is None
        (decision,) = harness.store.routing_decisions()
        assert decision["decision"] == "ignored" and "Modality CT" in decision["reason"]
        assert harness.store.list_jobs() == []

    def test_the_nodes_own_results_are_never_routed_nor_recorded(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        own = copy.deepcopy(exam[0])
        own.SOPInstanceUID = generate_uid()
        own.SeriesInstanceUID = generate_uid()
        own.Manufacturer = NODE_MANUFACTURER
        harness.orthanc.store("study-1", [*exam, own])
        job = harness.intake.stable_study("study-1")
        assert job is not None and len(job.payload["instances"]) == 4
        assert all(
            d["series_instance_uid"] != own.SeriesInstanceUID
            for d in harness.store.routing_decisions()
        )


class TestEarlyStart:
    """Told that a study grew (a new instance), intake starts only an exam with every view."""

    def test_an_exam_with_every_view_starts_before_it_is_stable(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        harness.orthanc.store("study-1", exam)
        job = harness.intake.stable_study("study-1", only_complete=True)
        assert job is not None and job.state is JobState.QUEUED
        assert job.next_attempt_at == harness.clock.now
        stable = harness.intake.stable_study("study-1")  # StableAge later: the same job
        assert stable is not None and stable.id == job.id
        assert len(harness.store.list_jobs()) == 1

    def test_an_incomplete_exam_leaves_no_trace_until_it_is_stable(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        for count in range(1, len(exam)):
            harness.orthanc.store("study-1", exam[count - 1 : count])
            assert harness.intake.stable_study("study-1", only_complete=True) is None
        assert harness.store.list_jobs() == [] and harness.store.routing_decisions() == []
        assert harness.routed == []
        waiting = harness.intake.stable_study("study-1")  # the stable wait still holds it
        assert waiting is not None and waiting.next_attempt_at == harness.clock.now + TIMEOUT

    def test_own_results_arriving_start_nothing_new(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        harness.orthanc.store("study-1", exam)
        first = harness.intake.stable_study("study-1", only_complete=True)
        own = copy.deepcopy(exam[0])
        own.SOPInstanceUID, own.SeriesInstanceUID = generate_uid(), generate_uid()
        own.Manufacturer = NODE_MANUFACTURER
        harness.orthanc.store("study-1", [own])
        again = harness.intake.stable_study("study-1", only_complete=True)
        assert first is not None and again is not None and again.id == first.id
        assert len(harness.store.list_jobs()) == 1


class TestExamAssembly:
    def test_a_missing_view_waits_for_the_assembly_timeout(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        kept = [ds for ds in exam if (ds.ImageLaterality, ds.ViewPosition) != ("L", "MLO")]
        harness.orthanc.store("study-1", kept)
        job = harness.intake.stable_study("study-1")
        assert job is not None and job.next_attempt_at == harness.clock.now + TIMEOUT
        request = ExamRequest.from_json(job.payload)
        assert (request.views, request.missing_views) == (("L CC", "R CC", "R MLO"), ("L MLO",))
        assert harness.store.lease("w1", 30) is None  # not before the timeout

    def test_a_late_view_joins_the_waiting_job(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        late = [ds for ds in exam if (ds.ImageLaterality, ds.ViewPosition) == ("L", "MLO")]
        kept = [ds for ds in exam if ds not in late]
        harness.orthanc.store("study-1", kept)
        waiting = harness.intake.stable_study("study-1")
        harness.clock.now += 10
        harness.orthanc.store("study-1", late)
        grown = harness.intake.stable_study("study-1")
        assert waiting is not None and grown is not None and grown.id == waiting.id
        assert (
            grown.payload == request_for(exam, views=("L CC", "L MLO", "R CC", "R MLO")).to_json()
        )
        assert grown.next_attempt_at == harness.clock.now  # complete: due now
        assert len(harness.store.list_jobs()) == 1

    def test_images_after_the_job_started_make_the_next_revision(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        harness.orthanc.store("study-1", exam)
        first = harness.intake.stable_study("study-1")
        assert first is not None and harness.store.lease("w1", 30) is not None
        repeat = copy.deepcopy(exam[0])
        repeat.SOPInstanceUID = generate_uid()
        harness.orthanc.store("study-1", [repeat])
        second = harness.intake.stable_study("study-1")
        assert second is not None and second.id != first.id
        request = ExamRequest.from_json(second.payload)
        assert request.revision == 1 and len(request.instances) == 5
