"""The work of one exam job, stage by stage: fetch, infer, write, publish.

A breast DCE-MRI exam (``ExamRequest.modality`` "MR") takes the kinetic CAD's branch
(node.jobs.mri_stages) in the infer and write stages; fetch and publish are shared.
Each stage reads and fills an ExamWork. Nothing is kept between attempts: a retried job
starts again from fetching, and deterministic output UIDs make the repeat harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pydicom

from node.config import (
    DEFAULT_EXPECTED_VIEWS,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_STAGE_TIMEOUT_SECONDS,
)
from node.delivery.service import Deliveries
from node.delivery.states import DeliveryState
from node.dicom.header import check_header
from node.dicom.views import valid_patient_orientation
from node.domain import (
    ExamRequest,
    ExamResult,
    ExamSummary,
    ImageSummary,
    OutputSummary,
    PreparedImage,
    SkippedImage,
)
from node.errors import FinalError, InvalidInput, StageTimedOut
from node.events import EventBus, ExamScored
from node.inference.scoring import ImageModel, prepare_images, score_images
from node.jobs.mri_stages import MriAnalysis, analyse_study, build_study_outputs, mri_summary
from node.jobs.revisions import add_predecessors, predecessor_outputs
from node.jobs.store import Job, JobStore
from node.writers.outputs import (
    OUTPUT_KINDS,
    BuildOptions,
    BuiltOutputs,
    Output,
    build_outputs,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


def run_bounded(stage: str, seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s answer, or StageTimedOut once it has run ``seconds``: the job fails with
    that reason and the worker moves on, so one exam never holds up the others.

    The call runs in a daemon thread, which is abandoned (Python cannot stop a thread) and
    ends on its own; what it computes afterwards is discarded. The pixel budget checked
    before decoding (node.dicom.limits) bounds what such a thread can hold meanwhile.
    """
    outcome: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # noqa: BLE001 - handed back and re-raised below
            outcome.append((False, error))

    thread = threading.Thread(target=target, name=f"stage-{stage}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive() or not outcome:
        log.error("stage abandoned after %.0f s", seconds, extra={"stage": stage})
        raise StageTimedOut(
            f"{stage} ran past its limit of {seconds:g} s (setting stage_timeout_seconds)"
        )
    done, value = outcome[0]
    if not done:
        raise value
    result: T = value
    return result


@dataclass
class ExamWork:
    job: Job
    sources: list[pydicom.Dataset] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)
    exam: ExamResult | None = None
    mri: MriAnalysis | None = None  # MR exams: the kinetic analysis instead of ``exam``
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
        if self.mri is not None:
            return mri_summary(
                self.mri,
                skipped=self.skipped,
                outputs=self.outputs,
                published=self.published,
                deliveries=self.deliveries,
                revision=self.request.revision,
                output_failures=self.output_failures,
            )
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
            output_failures=self.output_failures,
        )

    @property
    def output_failures(self) -> dict[str, str]:
        """The output kinds that could not be built valid, and why (BuiltOutputs.failures)."""
        return dict(self.outputs.failures) if isinstance(self.outputs, BuiltOutputs) else {}


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
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        stage_timeout: float = DEFAULT_STAGE_TIMEOUT_SECONDS,
    ) -> None:
        self.options = options
        self.max_image_pixels = max_image_pixels
        self.stage_timeout = stage_timeout
        self.model = model
        self.source = source
        self.deliveries = deliveries
        self.store = store
        self.bus = bus
        self.expected_views = expected_views

    def fetch(self, work: ExamWork) -> None:
        request = work.request
        sources, skipped = run_bounded("fetching", self.stage_timeout, lambda: self._fetch(request))
        work.sources += sources
        work.skipped += skipped
        if not work.sources:
            raise InvalidInput(self._nothing_usable(work))

    def _fetch(self, request: ExamRequest) -> tuple[list[pydicom.Dataset], list[SkippedImage]]:
        """Each routed instance whose header is sound; the others skipped with the reason."""
        sources: list[pydicom.Dataset] = []
        skipped: list[SkippedImage] = []
        for ref in request.instances:
            try:
                dataset = self.source.retrieve_instance(
                    ref.StudyInstanceUID, ref.SeriesInstanceUID, ref.SOPInstanceUID
                )
                check_header(dataset)
                sources.append(dataset)
            except InvalidInput as error:
                skipped.append(SkippedImage(ref.SOPInstanceUID, str(error)))
        return sources, skipped

    def infer(self, work: ExamWork) -> None:
        if work.request.modality == "MR":
            self._infer_mri(work)
            return
        sources, revision = list(work.sources), work.request.revision
        results_study = work.job.study_instance_uid  # the exam's (node.ingest.grouping)

        def prepare_and_score() -> tuple[list[PreparedImage], list[SkippedImage], ExamResult]:
            images, skipped = prepare_images(sources, max_pixels=self.max_image_pixels)
            if not images:
                raise InvalidInput(self._nothing_usable(work, skipped))
            exam = score_images(
                self.model,
                images,
                expected_views=self.expected_views,
                revision=revision,
                results_study=results_study,
            )
            return images, skipped, exam

        images, skipped, work.exam = run_bounded("inferring", self.stage_timeout, prepare_and_score)
        work.skipped += skipped
        scored = {image.source.SOPInstanceUID for image in images}
        work.sources = [
            writable_source(dataset)
            for dataset in work.sources
            if str(dataset.SOPInstanceUID) in scored
        ]
        self.bus.emit(ExamScored(work.job.id, tuple(images), work.exam))

    def write(self, work: ExamWork) -> None:
        if work.request.modality == "MR":
            self._write_mri(work)
            return
        assert work.exam is not None
        sources, exam = work.sources, work.exam
        kinds = [kind for kind in self.deliveries.wanted_kinds if kind in OUTPUT_KINDS]
        try:
            work.outputs = run_bounded(
                "writing",
                self.stage_timeout,
                lambda: build_outputs(sources, exam, kinds, self.options),
            )
        except (ValueError, TypeError, AttributeError, KeyError) as error:
            # highdicom refuses a source it cannot copy validly: the same every attempt.
            raise FinalError(
                f"cannot build valid result objects: {type(error).__name__}: {error}"
            ) from error
        if work.exam.revision > 0:
            # A new version after late images names the SRs it replaces (PS3.3 C.17.2.3).
            previous = self.store.list_jobs(study_instance_uid=work.job.study_instance_uid)
            add_predecessors(
                work.outputs,
                predecessor_outputs(previous, work.job.model_ref, work.exam.revision),
            )

    def _infer_mri(self, work: ExamWork) -> None:
        """The kinetic CAD: phase assembly and kinetics; no mammography model is involved."""
        sources, revision = list(work.sources), work.request.revision
        work.mri = run_bounded(
            "inferring", self.stage_timeout, lambda: analyse_study(sources, revision)
        )

    def _write_mri(self, work: ExamWork) -> None:
        assert work.mri is not None
        analysis, wanted = work.mri, self.deliveries.wanted_kinds
        try:
            work.outputs = run_bounded(
                "writing",
                self.stage_timeout,
                lambda: build_study_outputs(analysis, wanted, self.options.language),
            )
        except (ValueError, TypeError, AttributeError, KeyError) as error:
            raise FinalError(
                f"cannot build valid MR result objects: {type(error).__name__}: {error}"
            ) from error
        revision = work.request.revision
        if revision > 0:
            previous = self.store.list_jobs(study_instance_uid=work.job.study_instance_uid)
            add_predecessors(
                work.outputs, predecessor_outputs(previous, work.job.model_ref, revision)
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
    def _nothing_usable(work: ExamWork, more: list[SkippedImage] | None = None) -> str:
        every = work.skipped + (more or [])
        reasons = "; ".join(sorted({s.reason for s in every})) or "no instances"
        return f"no usable image in the exam: {reasons}"
