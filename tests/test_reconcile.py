"""Reconciliation, fast: Orthanc's /changes log from an in-memory stand-in, read page by
page into real intake and a real job store on SQLite; the last sequence number handled
is persisted, so a restarted node (or the next run) goes on from there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from node.config import RoutingRules
from node.errors import PeerUnavailable
from node.events import EventBus
from node.ingest import reconcile
from node.ingest.intake import ExamIntake
from node.ingest.reconcile import SEQ_KEY, Reconciler
from node.jobs.store import JobStore
from node.synthetic.dicom import synthetic_exam
from tests.memory import Clock, MemoryOrthanc, job_store


class Harness:
    def __init__(self, folder: Path) -> None:
        self.store: JobStore = job_store(folder, Clock())
        self.orthanc = MemoryOrthanc()
        self.intake = ExamIntake(
            self.orthanc,
            self.store,
            EventBus(),
            RoutingRules(),
            model_ref="demo/1.0.0",
            max_attempts=3,
        )

    def reconciler(self) -> Reconciler:
        """A new reconciler on the same store: what a restarted node builds."""
        return Reconciler(self.orthanc, self.store, self.intake)

    @property
    def seq(self) -> int:
        return int(self.store.get_state(SEQ_KEY) or 0)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.store.engine.dispose()


@pytest.fixture(scope="module")
def exams() -> list[list[pydicom.Dataset]]:
    """Three small exams (headers are all intake reads; the pixels stay tiny)."""
    return [
        [ds for ds, _ in synthetic_exam(seed, rows=80, columns=64, lesions_per_image=0)]
        for seed in (81, 82, 83)
    ]


def test_stable_studies_become_jobs_and_the_sequence_is_kept(
    harness: Harness, exams: list[list[pydicom.Dataset]]
) -> None:
    harness.orthanc.change("NewSeries", "series-x", "Series")
    harness.orthanc.stable_study("study-1", exams[0])
    harness.orthanc.change("NewPatient", "patient-x", "Patient")
    last = harness.orthanc.stable_study("study-2", exams[1])
    assert harness.reconciler().run_once() == 2
    assert harness.seq == last
    jobs = harness.store.list_jobs()
    assert sorted(job.study_instance_uid for job in jobs) == sorted(
        str(exam[0].StudyInstanceUID) for exam in exams[:2]
    )

    assert harness.reconciler().run_once() == 0  # nothing new: the next run starts at `last`
    assert harness.orthanc.pages[-1][0] == last
    third = harness.orthanc.stable_study("study-3", exams[2])
    assert harness.reconciler().run_once() == 1 and harness.seq == third
    assert len(harness.store.list_jobs()) == 3


def test_the_log_is_read_in_pages_and_a_long_backlog_over_several_runs(
    harness: Harness, exams: list[list[pydicom.Dataset]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "PAGE", 2)
    monkeypatch.setattr(reconcile, "MAX_PAGES_PER_RUN", 2)
    for index in range(6):
        harness.orthanc.change("NewInstance", f"instance-{index}", "Instance")
    harness.orthanc.stable_study("study-1", exams[0])  # seq 7
    assert harness.reconciler().run_once() == 0
    assert harness.orthanc.pages == [(0, 2), (2, 2)] and harness.seq == 4
    assert harness.reconciler().run_once() == 1
    assert harness.orthanc.pages[2:] == [(4, 2), (6, 2)] and harness.seq == 7


def test_a_study_deleted_before_reconciliation_is_passed_over(
    harness: Harness, exams: list[list[pydicom.Dataset]]
) -> None:
    harness.orthanc.stable_study("study-1", exams[0])
    harness.orthanc.delete("study-1")
    last = harness.orthanc.stable_study("study-2", exams[1])
    assert harness.reconciler().run_once() == 1 and harness.seq == last
    (job,) = harness.store.list_jobs()
    assert job.study_instance_uid == str(exams[1][0].StudyInstanceUID)


def test_a_failed_intake_leaves_the_sequence_before_it_for_the_next_run(
    harness: Harness, exams: list[list[pydicom.Dataset]]
) -> None:
    first = harness.orthanc.stable_study("study-1", exams[0])
    harness.orthanc.stable_study("study-2", exams[1])
    harness.orthanc.unavailable.add("study-2")
    with pytest.raises(PeerUnavailable):
        harness.reconciler().run_once()
    assert harness.seq == first  # study-1 is done; study-2 is tried again
    harness.orthanc.unavailable.clear()
    assert harness.reconciler().run_once() == 1
    assert len(harness.store.list_jobs()) == 2


def test_a_study_whose_stable_change_orthanc_lost_in_a_restart_is_taken_in(
    harness: Harness, exams: list[list[pydicom.Dataset]]
) -> None:
    # Stored, then Orthanc killed within its stability delay: NewStudy, never StableStudy.
    harness.orthanc.store("study-1", exams[0])
    harness.orthanc.change("NewStudy", "study-1")
    harness.orthanc.unstable.add("study-1")
    assert harness.reconciler().run_once() == 0  # still within the delay: waits
    assert harness.store.list_jobs() == []
    harness.orthanc.unstable.clear()  # the restarted Orthanc holds it as stable
    assert harness.reconciler().run_once() == 1  # a new reconciler: the wait was persisted
    (job,) = harness.store.list_jobs()
    assert job.study_instance_uid == str(exams[0][0].StudyInstanceUID)
    assert harness.reconciler().run_once() == 0  # taken in once


def test_a_study_with_its_stable_change_is_not_asked_about_again(
    harness: Harness, exams: list[list[pydicom.Dataset]]
) -> None:
    harness.orthanc.store("study-2", exams[1])
    harness.orthanc.change("NewStudy", "study-2")
    harness.orthanc.change("StableStudy", "study-2")
    harness.orthanc.change("NewStudy", "study-gone")  # deleted before it was stable
    assert harness.reconciler().run_once() == 1
    assert harness.store.get_state(reconcile.WAITING_KEY) == "{}"
    assert len(harness.store.list_jobs()) == 1
