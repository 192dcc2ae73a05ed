"""Plain value objects shared by every layer; this module imports nothing of ours.

Coordinates are image pixel coordinates of the source image: ``column`` (x, to the right)
and ``row`` (y, downwards), as DICOM SCOORD uses them (PS3.3 C.18.6.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

FindingKind = Literal["mass", "calcification"]
Laterality = Literal["L", "R"]


@dataclass(frozen=True)
class ModelSpec:
    """Identity of one model version, as results must name it (IHE AIR provenance)."""

    model_id: str
    version: str
    name: str
    manufacturer: str
    device_uid: str  # DeviceUID of this model version in Contributing Equipment
    intended_use: str
    training_data: str
    operating_point: float  # exam score at or above which the model suggests recall
    finding_threshold: float  # heatmap peak at or above which a finding is reported
    input_size: tuple[int, int]  # (rows, columns) the network sees

    @property
    def ref(self) -> str:
        """The "id/version" reference that jobs, registry and results name the model by."""
        return f"{self.model_id}/{self.version}"


@dataclass(frozen=True)
class Finding:
    """One suspected lesion on one image."""

    column: float
    row: float
    radius: float  # pixels of the source image
    score: float  # probability of malignancy of this finding, in [0, 1]
    kind: FindingKind = "mass"


@dataclass
class ImagePrediction:
    """What a model says about one image."""

    score: float  # probability of malignancy of the image, in [0, 1]
    heatmap: npt.NDArray[np.float32]  # lesion probability per pixel, source image size
    findings: list[Finding] = field(default_factory=list)
    density: str | None = None  # ACR BI-RADS breast density "a".."d", when the model gives it


@dataclass(frozen=True)
class SourceImage:
    """A routed source image, identified as DICOM does."""

    StudyInstanceUID: str
    SeriesInstanceUID: str
    SOPInstanceUID: str
    SOPClassUID: str
    ImageLaterality: str  # "L", "R" or "" when unknown
    ViewPosition: str  # "CC", "MLO", ... or "" when unknown


@dataclass
class ImageResult:
    source: SourceImage
    prediction: ImagePrediction


@dataclass
class ExamResult:
    """All results of one model version for one study."""

    StudyInstanceUID: str
    model: ModelSpec
    images: list[ImageResult]
    density: str | None = None  # exam breast density, ACR BI-RADS "a".."d", when given
    # Exam assembly: False when expected views were still missing at the assembly timeout;
    # missing_views names them ("R CC", ...). The score then covers only what arrived.
    complete: bool = True
    missing_views: tuple[str, ...] = ()
    # 0 for the first result of the exam; n > 0 for the n-th re-analysis after late images
    # (output UIDs change with it, and the SR names its predecessor).
    revision: int = 0

    @property
    def score(self) -> float:
        """Exam malignancy score: the most suspicious image decides (screening is per breast)."""
        return max((image.prediction.score for image in self.images), default=0.0)

    def breast_score(self, laterality: Laterality) -> float | None:
        scores = [i.prediction.score for i in self.images if i.source.ImageLaterality == laterality]
        return max(scores) if scores else None

    @property
    def recall(self) -> bool:
        return self.score >= self.model.operating_point
