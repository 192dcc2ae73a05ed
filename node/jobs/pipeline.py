"""The work of one exam job, stage by stage: fetch, infer, write, publish.

Each stage reads and fills an ExamWork. Nothing is kept between attempts: a retried job
starts again from fetching, and deterministic output UIDs make the repeat harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydicom

from node.config import DEFAULT_EXPECTED_VIEWS
from node.delivery.service import Deliveries, DeliveryState
from node.dicom.pixels import presentation_pixels
from node.dicom.views import missing_views, normalise_dataset, valid_patient_orientation
from node.domain import ExamResult, ImageResult, SourceImage
from node.errors import FinalError, InvalidInput
from node.inference.runner import LoadedModel
from node.jobs.revisions import add_predecessors, predecessor_outputs
from node.jobs.store import Job, JobStore
from node.net.dicomweb import DicomWebClient
from node.writers.outputs import BuildOptions, Output, build_outputs

if TYPE_CHECKING:
    from node.review.shadow import ShadowRunner

log = logging.getLogger(__name__)


@dataclass
class ExamWork:
    job: Job
    sources: list[pydicom.Dataset] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    exam: ExamResult | None = None
    outputs: list[Output] = field(default_factory=list)
    published: dict[str, int] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the job table keeps: UIDs, scores and reasons, never patient data."""
        assert self.exam is not None
        model = self.exam.model
        return {
            "model": model.ref,
            "score": round(self.exam.score, 4),
            "recall": self.exam.recall,
            "complete": self.exam.complete,
            "missing_views": list(self.exam.missing_views),
            "revision": self.exam.revision,
            "breasts": {lat: self.exam.breast_score(lat) for lat in ("L", "R")},
            "images": [
                {
                    "SOPInstanceUID": r.source.SOPInstanceUID,
                    "ImageLaterality": r.source.ImageLaterality,
                    "ViewPosition": r.source.ViewPosition,
                    "score": round(r.prediction.score, 4),
                    "findings": len(r.prediction.findings),
                }
                for r in self.exam.images
            ],
            "skipped": self.skipped,
            "outputs": [
                {
                    "kind": output.kind,
                    "SOPInstanceUID": output.dataset.SOPInstanceUID,
                    "SOPClassUID": output.dataset.SOPClassUID,
                    "SeriesInstanceUID": output.dataset.SeriesInstanceUID,
                    "Modality": output.dataset.Modality,
                }
                for output in self.outputs
            ],
            "published": self.published,
            "deliveries": self.deliveries,
        }


def source_image(dataset: pydicom.Dataset) -> SourceImage:
    """The routed image as results name it: laterality and view from wherever the header
    keeps them (node.dicom.views documents the order)."""
    found = normalise_dataset(dataset)
    return SourceImage(
        StudyInstanceUID=str(dataset.StudyInstanceUID),
        SeriesInstanceUID=str(dataset.SeriesInstanceUID),
        SOPInstanceUID=str(dataset.SOPInstanceUID),
        SOPClassUID=str(dataset.SOPClassUID),
        ImageLaterality=found.laterality,
        ViewPosition=found.view,
    )


def writable_source(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """The source as the writers copy from it: a Patient Orientation that is not two valid
    directions (CBIS-DDSM writes the view there) is emptied in this in-memory copy, since
    results copying it would be invalid (PS3.3 C.7.6.1.1.1); the stored image is unchanged."""
    if not valid_patient_orientation(dataset):
        dataset.PatientOrientation = ""  # Type 2: known to be unknown
    return dataset


class ExamPipeline:
    #: Set by the composition root when a shadow model runs; its results are never published.
    shadow: ShadowRunner | None = None

    def __init__(
        self,
        model: LoadedModel,
        source: DicomWebClient,
        deliveries: Deliveries,
        *,
        store: JobStore,
        expected_views: tuple[str, ...] = DEFAULT_EXPECTED_VIEWS,
        options: BuildOptions = BuildOptions(),  # noqa: B008 - frozen, so a safe default
    ) -> None:
        self.options = options
        self.model = model
        self.source = source
        self.deliveries = deliveries
        self.store = store
        self.expected_views = expected_views

    def fetch(self, work: ExamWork) -> None:
        for ref in work.job.payload["instances"]:
            try:
                work.sources.append(
                    self.source.retrieve_instance(
                        ref["StudyInstanceUID"], ref["SeriesInstanceUID"], ref["SOPInstanceUID"]
                    )
                )
            except InvalidInput as error:
                work.skipped.append({"SOPInstanceUID": ref["SOPInstanceUID"], "reason": str(error)})
        if not work.sources:
            raise InvalidInput(self._nothing_usable(work))

    def infer(self, work: ExamWork) -> None:
        results: list[ImageResult] = []
        usable: list[pydicom.Dataset] = []
        for dataset in work.sources:
            source = source_image(dataset)
            try:
                pixels = presentation_pixels(dataset)
            except InvalidInput as error:
                work.skipped.append({"SOPInstanceUID": source.SOPInstanceUID, "reason": str(error)})
                continue
            prediction = self.model.predict(pixels, source.ImageLaterality)
            results.append(ImageResult(source=source, prediction=prediction))
            usable.append(writable_source(dataset))
        if not results:
            raise InvalidInput(self._nothing_usable(work))
        work.sources = usable
        present = [f"{r.source.ImageLaterality} {r.source.ViewPosition}" for r in results]
        missing = tuple(missing_views(present, self.expected_views))
        work.exam = ExamResult(
            StudyInstanceUID=results[0].source.StudyInstanceUID,
            model=self.model.spec,
            images=results,
            complete=not missing,
            missing_views=missing,
            revision=int(work.job.payload.get("revision", 0)),
        )
        if self.shadow is not None:
            self.shadow.run(work)  # stores its verdict; never raises

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
        reasons = "; ".join(sorted({s["reason"] for s in work.skipped})) or "no instances"
        return f"no usable image in the exam: {reasons}"
