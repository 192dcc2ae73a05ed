"""The pipeline's stages, fast: fetch from an in-memory DICOMweb source holding a synthetic
exam, infer with a stand-in model (test_inference and test_shadow run the shipped one
through the same scoring path), write real result objects and publish to an in-memory
destination, with a real job store on SQLite. No Orthanc, no network."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UID

from node.delivery.service import Deliveries
from node.domain import ExamRequest, ExamSummary, InstanceRef, SkippedImage
from node.errors import FinalError, InvalidInput
from node.events import EventBus, ExamScored
from node.inference.scoring import ImageModel
from node.jobs.pipeline import ExamPipeline, ExamWork
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore
from node.jobs.worker import Worker, WorkerOptions
from tests.memory import (
    Clock,
    MemoryDicomWeb,
    MemoryModel,
    MemoryPublisher,
    job_store,
    small_exam,
)

OPTIONS = WorkerOptions(
    lease_seconds=60.0, backoff_seconds=1.0, backoff_max_seconds=1.0, poll_seconds=0.01
)


@pytest.fixture(scope="module")
def model() -> MemoryModel:
    return MemoryModel()


@pytest.fixture(scope="module")
def exam() -> list[pydicom.Dataset]:
    return small_exam(seed=61, lesions=1)


class Harness:
    """A pipeline on real parts except its two peers, and the events it emits."""

    def __init__(self, folder: Path, model: ImageModel, exam: list[pydicom.Dataset]) -> None:
        self.clock = Clock()
        self.store: JobStore = job_store(folder, self.clock)
        self.source = MemoryDicomWeb(exam)
        self.destination = MemoryPublisher(outputs=("seg", "tid1500"))
        self.bus = EventBus()
        self.scored: list[ExamScored] = []
        self.bus.subscribe(ExamScored, self.scored.append)
        deliveries = Deliveries(
            self.store.engine, [self.destination], folder / "outbox", self.clock
        )
        self.pipeline = ExamPipeline(model, self.source, deliveries, store=self.store, bus=self.bus)

    def job(self, datasets: list[pydicom.Dataset], revision: int = 0, extra: str = "") -> Job:
        study = str(datasets[0].StudyInstanceUID)
        instances = tuple(
            InstanceRef(study, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)) for ds in datasets
        )
        if extra:
            instances += (InstanceRef(study, "1.2.3", extra),)
        job, _ = self.store.create_job(
            idempotency_key=f"{study}-{revision}-{len(instances)}",
            study_instance_uid=study,
            model_ref=self.pipeline.model.spec.ref,
            payload=ExamRequest("s1", instances, revision=revision).to_json(),
            max_attempts=3,
        )
        return job


@pytest.fixture
def harness(tmp_path: Path, model: ImageModel, exam: list[pydicom.Dataset]) -> Iterator[Harness]:
    harness = Harness(tmp_path, model, exam)
    yield harness
    harness.store.engine.dispose()


class TestFetch:
    def test_every_routed_instance_is_fetched_and_a_gone_one_skipped(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        work = ExamWork(harness.job(exam, extra="1.2.3.999"))
        harness.pipeline.fetch(work)
        assert [str(ds.SOPInstanceUID) for ds in work.sources] == [
            str(ds.SOPInstanceUID) for ds in exam
        ]
        assert work.skipped == [
            SkippedImage("1.2.3.999", "instance 1.2.3.999 is no longer in memory")
        ]

    def test_an_exam_with_nothing_left_fails_for_good(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        work = ExamWork(harness.job(exam))
        harness.source.stored.clear()  # deleted from the archive after routing
        with pytest.raises(InvalidInput, match="no usable image in the exam: instance"):
            harness.pipeline.fetch(work)

    def test_an_unreadable_payload_fails_for_good(self, harness: Harness) -> None:
        job, _ = harness.store.create_job(
            idempotency_key="bad",
            study_instance_uid="1.2",
            model_ref="demo/1.0.0",
            payload={"instances": []},
            max_attempts=1,
        )
        with pytest.raises(FinalError, match=r"payload\.orthanc_study_id is missing"):
            harness.pipeline.fetch(ExamWork(job))


def fetched(harness: Harness, datasets: list[pydicom.Dataset], revision: int = 0) -> ExamWork:
    work = ExamWork(harness.job(datasets, revision=revision))
    harness.pipeline.fetch(work)
    return work


class TestInfer:
    def test_each_image_is_scored_and_the_exam_announced(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        work = fetched(harness, exam, revision=2)
        harness.pipeline.infer(work)
        assert work.exam is not None and work.exam.complete and work.exam.revision == 2
        assert work.exam.model.ref == harness.pipeline.model.spec.ref
        scored = [r.source.SOPInstanceUID for r in work.exam.images]
        assert scored == [str(ds.SOPInstanceUID) for ds in exam]
        assert {(r.source.ImageLaterality, r.source.ViewPosition) for r in work.exam.images} == {
            ("R", "CC"),
            ("L", "CC"),
            ("R", "MLO"),
            ("L", "MLO"),
        }
        (event,) = harness.scored
        assert event.job_id == work.job.id and event.exam is work.exam
        assert [image.source.SOPInstanceUID for image in event.images] == scored
        assert all(image.pixels.dtype == "float32" for image in event.images)

    def test_a_missing_view_makes_an_incomplete_exam(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        kept = [ds for ds in exam if (ds.ImageLaterality, ds.ViewPosition) != ("L", "MLO")]
        work = fetched(harness, kept)
        harness.pipeline.infer(work)
        assert work.exam is not None and len(work.exam.images) == 3
        assert (work.exam.complete, work.exam.missing_views) == (False, ("L MLO",))

    def test_an_image_without_pixels_is_skipped_with_the_reason(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        broken = copy.deepcopy(exam[0])
        del broken.PixelData
        broken.SOPInstanceUID = broken.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.4.5")
        harness.source = MemoryDicomWeb([*exam, broken])
        harness.pipeline.source = harness.source
        work = fetched(harness, [*exam, broken])
        harness.pipeline.infer(work)
        assert work.exam is not None and len(work.exam.images) == 4
        assert [s.SOPInstanceUID for s in work.skipped] == ["1.2.3.4.5"]
        assert [str(ds.SOPInstanceUID) for ds in work.sources] == [
            str(ds.SOPInstanceUID) for ds in exam
        ]

    def test_a_failing_subscriber_never_fails_the_stage(
        self, harness: Harness, exam: list[pydicom.Dataset], caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(event: ExamScored) -> None:
            raise RuntimeError("observer bug")

        harness.bus.subscribe(ExamScored, broken)
        work = fetched(harness, exam)
        harness.pipeline.infer(work)
        assert work.exam is not None and len(harness.scored) == 1
        assert "event handler failed" in caplog.text


class TestWriteAndPublish:
    def test_results_are_written_and_sent_to_the_destination(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        work = fetched(harness, exam)
        for stage in (harness.pipeline.infer, harness.pipeline.write, harness.pipeline.publish):
            stage(work)
        assert {output.kind for output in work.outputs} == {"seg", "tid1500"}
        sent = sorted(str(ds.SOPInstanceUID) for ds in harness.destination.sent)
        assert sent == sorted(str(o.dataset.SOPInstanceUID) for o in work.outputs)
        assert work.published == {"pacs": len(work.outputs)}
        assert [(d["destination"], d["state"]) for d in work.deliveries] == [("pacs", "delivered")]
        summary = work.summary()
        assert ExamSummary.from_json(summary.to_json()) == summary
        assert [o.SOPInstanceUID for o in summary.outputs] == [
            o.dataset.SOPInstanceUID for o in work.outputs
        ]

    def test_a_destination_that_is_down_does_not_hold_up_the_job(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        harness.destination.down = True
        work = fetched(harness, exam)
        for stage in (harness.pipeline.infer, harness.pipeline.write, harness.pipeline.publish):
            stage(work)
        assert work.published == {} and harness.destination.sent == []
        assert [(d["destination"], d["state"]) for d in work.deliveries] == [("pacs", "retry")]


class TestThroughTheWorker:
    def test_a_revision_names_the_sr_it_replaces(
        self, harness: Harness, exam: list[pydicom.Dataset]
    ) -> None:
        worker = Worker(harness.store, harness.pipeline, harness.bus, OPTIONS, worker_id="w1")
        first = harness.job(exam)
        done = worker.run_once()
        assert done is not None and done.id == first.id and done.state is JobState.DONE
        old_sr = next(ds for ds in harness.destination.sent if ds.Modality == "SR")

        second = harness.job(exam, revision=1)
        done = worker.run_once()
        assert done is not None and done.id == second.id and done.state is JobState.DONE
        result = ExamSummary.from_json(done.result)
        assert result.revision == 1 and len(result.images) == 4
        new_sr = [ds for ds in harness.destination.sent if ds.Modality == "SR"][-1]
        assert new_sr.SOPInstanceUID != old_sr.SOPInstanceUID
        predecessor = new_sr.PredecessorDocumentsSequence[0]  # PS3.3 C.17.2.3
        reference = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert reference.ReferencedSOPInstanceUID == old_sr.SOPInstanceUID
        assert predecessor.StudyInstanceUID == exam[0].StudyInstanceUID
