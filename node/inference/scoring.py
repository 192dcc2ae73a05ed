"""Scoring an exam: each usable image through one model, the answers gathered per study.

One path for the live model (``node.jobs.pipeline``) and the shadow model
(``node.review.shadow``): pixels are prepared and laterality and view read once
(``node.dicom``), and every model scores those same prepared images, so the two can
differ only by the model, never by how the images were read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, cast

import numpy as np
import numpy.typing as npt
import pydicom

from node.config import DEFAULT_MAX_IMAGE_PIXELS
from node.dicom.header import check_header
from node.dicom.pixels import presentation_pixels
from node.dicom.quality import check_breast_present, check_image_header
from node.dicom.uids import is_valid_uid
from node.dicom.views import missing_views, normalise_dataset
from node.domain import (
    ExamImage,
    ExamResult,
    ImagePrediction,
    ImageResult,
    ModelSpec,
    PreparedImage,
    SkippedImage,
    SourceImage,
)
from node.errors import InvalidInput


class ImageModel(Protocol):
    """What scoring needs of a model: its spec and a score for one image."""

    spec: ModelSpec

    def predict(
        self, pixels: npt.NDArray[np.floating] | npt.NDArray[np.integer], laterality: str
    ) -> ImagePrediction:
        """Score one image given as presentation pixels in [0, 1]."""
        ...


class ExamModel(ImageModel, Protocol):
    """A model that scores an exam at once (``ContralateralModel`` compares each breast with
    the other breast of the same view)."""

    def predict_exam(self, images: Sequence[ExamImage]) -> list[ImagePrediction]:
        """Score every image of one exam, in order."""
        ...


def predict_exam(model: ImageModel, images: Sequence[ExamImage]) -> list[ImagePrediction]:
    """The model's exam-level predictions; a per-image model scores each image alone."""
    exam_level = getattr(model, "predict_exam", None)
    if exam_level is not None:
        return cast(ExamModel, model).predict_exam(images)
    return [model.predict(image.pixels, image.laterality) for image in images]


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


def prepare_images(
    datasets: Sequence[pydicom.Dataset], *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> tuple[list[PreparedImage], list[SkippedImage]]:
    """The images a model can score, in order, and the ones it cannot, with the reason.

    An image is scored only when its header is sound (node.dicom.header), it fits the pixel
    budget, and it passes the quality checks (node.dicom.quality): a broken image never
    yields a result."""
    prepared: list[PreparedImage] = []
    skipped: list[SkippedImage] = []
    for dataset in datasets:
        try:
            check_header(dataset)
            source = source_image(dataset)
            check_image_header(dataset)
            pixels = presentation_pixels(dataset, max_pixels)
            check_breast_present(pixels)
            prepared.append(PreparedImage(source, pixels))
        except InvalidInput as error:
            skipped.append(SkippedImage(_named_uid(dataset), str(error)))
    return prepared, skipped


def _named_uid(dataset: pydicom.Dataset) -> str:
    """The SOP Instance UID to name a skipped image by, when it is a valid one."""
    value = dataset.get("SOPInstanceUID", "")
    return str(value) if isinstance(value, str) and is_valid_uid(str(value)) else "(invalid UID)"


def score_images(
    model: ImageModel,
    images: Sequence[PreparedImage],
    *,
    expected_views: Sequence[str],
    revision: int,
    results_study: str = "",
) -> ExamResult:
    """``model``'s result for the exam these images make up; InvalidInput when there are none.

    The exam is incomplete when an expected view ("R CC", ...) is not among the images.
    ``results_study``: the study the exam-level results go into when the exam spans several
    (node.ingest.grouping); used when one of the images is in it, else the first image's study.
    """
    if not images:
        raise InvalidInput("no usable image to score")
    predictions = predict_exam(
        model,
        [
            ExamImage(image.pixels, image.source.ImageLaterality, image.source.ViewPosition)
            for image in images
        ],
    )
    results = [
        ImageResult(image.source, prediction, image.pixels)
        for image, prediction in zip(images, predictions, strict=True)
    ]
    present = [f"{r.source.ImageLaterality} {r.source.ViewPosition}" for r in results]
    missing = tuple(missing_views(present, expected_views))
    studies = [r.source.StudyInstanceUID for r in results]
    return ExamResult(
        StudyInstanceUID=results_study if results_study in studies else studies[0],
        model=model.spec,
        images=results,
        complete=not missing,
        missing_views=missing,
        revision=revision,
    )
