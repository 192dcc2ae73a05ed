"""The work of one exam job, stage by stage: fetch, infer, write, publish.

Each stage reads and fills an ExamWork. Nothing is kept between attempts: a retried job
starts again from fetching, and deterministic output UIDs make the repeat harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import pydicom

from node.config import DEFAULT_EXPECTED_VIEWS
from node.delivery.service import Deliveries
from node.delivery.states import DeliveryState
from node.dicom.views import valid_patient_orientation
from node.domain import (
    ExamRequest,
    ExamResult,
    ExamSummary,
    ImageSummary,
    OutputSummary,
    SkippedImage,
)
from node.errors import FinalError, InvalidInput
from node.events import EventBus, ExamScored
from node.inference.scoring import ImageModel, prepare_images, score_images
from node.jobs.revisions import add_predecessors, predecessor_outputs
from node.jobs.store import Job, JobStore
from node.writers.outputs import BuildOptions, Output, build_outputs

log = logging.getLogger(__name__)


@dataclass
class ExamWork:
    job: Job
    sources: list[pydicom.Dataset] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)
    exam: ExamResult | None = None
    outputs: list[Output] = field(default_factory=list)
    published: dict[str, int] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def request(self) -> ExamRequest:
        """The job's payload; one that cannot be read can never be processed."""
        try:
            return ExamRequest.from_json(self.job.payload)
        except ValueError as error:
            raise FinalError(f"unreadable job payload: {error}") from error

    def summary(self) -> ExamSummary:
        """What the job table keeps: UIDs, scores and reasons, never patient data."""
        assert self.exam is not None
        return ExamSummary(
            model=self.exam.model.ref,
            score=round(self.exam.score, 4),
            recall=self.exam.recall,
            complete=self.exam.complete,
            missing_views=self.exam.missing_views,
            revision=self.exam.revision,
            breasts={lat: self.exam.breast_score(lat) for lat in ("L", "R")},
            images=tuple(
                ImageSummary(
                    SOPInstanceUID=r.source.SOPInstanceUID,
                    ImageLaterality=r.source.ImageLaterality,
                    ViewPosition=r.source.ViewPosition,
                    score=round(r.prediction.score, 4),
                    findings=len(r.prediction.findings),
                    compared=r.prediction.compared,
                )
                for r in self.exam.images
            ),
            skipped=tuple(self.skipped),
            outputs=tuple(
                OutputSummary(
                    kind=output.kind,
                    SOPInstanceUID=output.dataset.SOPInstanceUID,
                    SOPClassUID=output.dataset.SOPClassUID,
                    SeriesInstanceUID=output.dataset.SeriesInstanceUID,
                    Modality=output.dataset.Modality,
                )
                for output in self.outputs
            ),
            published=self.published,
            deliveries=tuple(self.deliveries),
        )


def writable_source(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """The source as the writers copy from it: a Patient Orientation that is not two valid
    directions (CBIS-DDSM writes the view there) is emptied in this in-memory copy, since
    results copying it would be invalid (PS3.3 C.7.6.1.1.1); the stored image is unchanged."""
    if not valid_patient_orientation(dataset):
        dataset.PatientOrientation = ""  # Type 2: known to be unknown
    return dataset


class InstanceSource(Protocol):
    """Where the pipeline fetches routed instances from (DICOMweb WADO-RS in the node)."""

    def retrieve_instance(
        self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> pydicom.Dataset:
        """The instance; InvalidInput when it is gone or unreadable (that image is skipped)."""
        ...


class ExamPipeline:
    """The stages of an exam job. After inference it emits ExamScored on ``bus``, so
    observers such as the shadow model see the exam without being part of the job."""

    def __init__(
        self,
        model: ImageModel,
        source: InstanceSource,
        deliveries: Deliveries,
        *,
        store: JobStore,
        bus: EventBus,
        expected_views: tuple[str, ...] = DEFAULT_EXPECTED_VIEWS,
        options: BuildOptions = BuildOptions(),  # noqa: B008 - frozen, so a safe default
    ) -> None:
        self.options = options
        self.model = model
        self.source = source
        self.deliveries = deliveries
        self.store = store
        self.bus = bus
        self.expected_views = expected_views

    def fetch(self, work: ExamWork) -> None:
        for ref in work.request.instances:
            try:
                work.sources.append(
                    self.source.retrieve_instance(
                        ref.StudyInstanceUID, ref.SeriesInstanceUID, ref.SOPInstanceUID
                    )
                )
            except InvalidInput as error:
                work.skipped.append(SkippedImage(ref.SOPInstanceUID, str(error)))
        if not work.sources:
            raise InvalidInput(self._nothing_usable(work))

    def infer(self, work: ExamWork) -> None:
        images, skipped = prepare_images(work.sources)
        work.skipped += skipped
        if not images:
            raise InvalidInput(self._nothing_usable(work))
        work.exam = score_images(
            self.model,
            images,
            expected_views=self.expected_views,
            revision=work.request.revision,
        )
        scored = {image.source.SOPInstanceUID for image in images}
        work.sources = [
            writable_source(dataset)
            for dataset in work.sources
            if str(dataset.SOPInstanceUID) in scored
        ]
        self.bus.emit(ExamScored(work.job.id, tuple(images), work.exam))

    def write(self, work: ExamWork) -> None:
        assert work.exam is not None
        try:
            work.outputs = build_outputs(
                work.sources, work.exam, self.deliveries.wanted_kinds, self.options
            )
        except ValueError as error:
            raise FinalError(f"cannot build valid result objects: {error}") from error
        if work.exam.revision > 0:
            # A new version after late images names the SRs it replaces (PS3.3 C.17.2.3).
            previous = self.store.list_jobs(study_instance_uid=work.job.study_instance_uid)
            add_predecessors(
                work.outputs,
                predecessor_outputs(previous, work.job.model_ref, work.exam.revision),
            )

    def publish(self, work: ExamWork) -> None:
        """Each destination gets its own delivery; one that is down is retried (and in the
        end dead-lettered) apart from the job, so the analysis is done once."""
        settled = self.deliveries.deliver_job(work.job.id, work.outputs)
        work.published = {
            d.destination: d.sent for d in settled if d.state is DeliveryState.DELIVERED
        }
        work.deliveries = [d.view() for d in settled]

    @staticmethod
    def _nothing_usable(work: ExamWork) -> str:
        reasons = "; ".join(sorted({s.reason for s in work.skipped})) or "no instances"
        return f"no usable image in the exam: {reasons}"
