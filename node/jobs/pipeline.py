"""The work of one exam job, stage by stage: fetch, infer, write, publish.

Each stage reads and fills an ExamWork. Nothing is kept between attempts: a retried job
starts again from fetching, and deterministic output UIDs make the repeat harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pydicom

from node.domain import ExamResult, ImageResult, SourceImage
from node.errors import FinalError, InvalidInput
from node.inference.pixels import presentation_pixels
from node.inference.runner import LoadedModel
from node.jobs.store import Job
from node.net.dicomweb import DicomWebClient
from node.writers.outputs import Output, build_outputs

log = logging.getLogger(__name__)


@dataclass
class ExamWork:
    job: Job
    sources: list[pydicom.Dataset] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    exam: ExamResult | None = None
    outputs: list[Output] = field(default_factory=list)
    published: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the job table keeps: UIDs, scores and reasons, never patient data."""
        assert self.exam is not None
        model = self.exam.model
        return {
            "model": f"{model.model_id}/{model.version}",
            "score": round(self.exam.score, 4),
            "recall": self.exam.recall,
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
                    "Modality": output.dataset.Modality,
                }
                for output in self.outputs
            ],
            "published": self.published,
        }


def source_image(dataset: pydicom.Dataset) -> SourceImage:
    laterality = str(dataset.get("ImageLaterality", "") or dataset.get("Laterality", "") or "")
    view = str(dataset.get("ViewPosition", "") or "")
    return SourceImage(
        StudyInstanceUID=str(dataset.StudyInstanceUID),
        SeriesInstanceUID=str(dataset.SeriesInstanceUID),
        SOPInstanceUID=str(dataset.SOPInstanceUID),
        SOPClassUID=str(dataset.SOPClassUID),
        ImageLaterality=laterality.upper() if laterality.upper() in ("L", "R") else "",
        ViewPosition=view.upper(),
    )


class ExamPipeline:
    def __init__(
        self, model: LoadedModel, source: DicomWebClient, destinations: list[DicomWebClient]
    ) -> None:
        self.model = model
        self.source = source
        self.destinations = destinations

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
            usable.append(dataset)
        if not results:
            raise InvalidInput(self._nothing_usable(work))
        work.sources = usable
        work.exam = ExamResult(
            StudyInstanceUID=results[0].source.StudyInstanceUID,
            model=self.model.spec,
            images=results,
        )

    def write(self, work: ExamWork) -> None:
        assert work.exam is not None
        try:
            work.outputs = build_outputs(work.sources, work.exam)
        except ValueError as error:
            raise FinalError(f"cannot build valid result objects: {error}") from error

    def publish(self, work: ExamWork) -> None:
        for client in self.destinations:
            outcome = client.store([output.dataset for output in work.outputs])
            if outcome.failed:
                reasons = ", ".join(f"0x{reason:04X}" for _, reason in outcome.failed)
                raise FinalError(
                    f"{client.destination.name} refused {len(outcome.failed)} objects ({reasons})"
                )
            work.published[client.destination.name] = len(outcome.stored)

    @staticmethod
    def _nothing_usable(work: ExamWork) -> str:
        reasons = "; ".join(sorted({s["reason"] for s in work.skipped})) or "no instances"
        return f"no usable image in the exam: {reasons}"
