"""Plain value objects shared by every layer; this module imports nothing of ours.

Coordinates are image pixel coordinates of the source image: ``column`` (x, to the right)
and ``row`` (y, downwards), as DICOM SCOORD uses them (PS3.3 C.18.6.1.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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
    # Exam-aware models: True when the breast was compared with the other breast of the same
    # view, False for the single-image fallback (other side missing); None for models that
    # score every image alone.
    compared: bool | None = None


@dataclass(frozen=True)
class ExamImage:
    """One image of an exam as an exam-aware model reads it: presentation pixels in [0, 1]
    and where it belongs (ImageLaterality "L"/"R"/"", ViewPosition "CC"/"MLO"/...)."""

    pixels: npt.NDArray[np.floating] | npt.NDArray[np.integer]
    laterality: str
    view: str


@dataclass(frozen=True)
class SourceImage:
    """A routed source image, identified as DICOM does."""

    StudyInstanceUID: str
    SeriesInstanceUID: str
    SOPInstanceUID: str
    SOPClassUID: str
    ImageLaterality: str  # "L", "R" or "" when unknown
    ViewPosition: str  # "CC", "MLO", ... or "" when unknown


@dataclass(frozen=True)
class PreparedImage:
    """A source image ready for any model: its identity and its presentation pixels
    (float32 in [0, 1], node.dicom.pixels), read once however many models score it."""

    source: SourceImage
    pixels: npt.NDArray[np.float32]


@dataclass
class ImageResult:
    source: SourceImage
    prediction: ImagePrediction
    # The presentation pixels the model scored (float32 in [0, 1], node.dicom.pixels), kept so
    # the writers that draw the image (summary, PDF, breast geometry) need not compute them
    # again at full resolution; None where the result was made without them.
    pixels: npt.NDArray[np.float32] | None = field(default=None, repr=False, compare=False)


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


# -- the JSON contracts of an exam job (``job.payload`` and ``job.result``) ----------------
#
# Built in one place each (intake, the pipeline) and read in several; stored as JSON, so the
# keys and their order are part of the contract: existing rows and the API's JSON keep their
# shape. Reading is strict: a missing or wrong-typed field is a ValueError naming it. Fields
# added after the first release (exam assembly, revisions, deliveries) default when absent,
# so rows written before them stay readable.

_REQUIRED: Any = object()


class _Fields:
    """Strict reader of one JSON object; ``where`` names it in every error."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a JSON object, not {type(data).__name__}")
        self.data: Mapping[str, Any] = data
        self.where = where

    def _get(self, name: str, default: Any) -> Any:
        if name in self.data:
            return self.data[name]
        if default is _REQUIRED:
            raise ValueError(f"{self.where}.{name} is missing")
        return default

    def _wrong(self, name: str, expected: str, value: object) -> ValueError:
        return ValueError(f"{self.where}.{name} must be {expected}, not {type(value).__name__}")

    def text(self, name: str) -> str:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, str):
            raise self._wrong(name, "a string", value)
        return value

    def integer(self, name: str, default: Any = _REQUIRED) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(name, "an integer", value)
        return value

    def number(self, name: str) -> float:
        value = self._get(name, _REQUIRED)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(name, "a number", value)
        return float(value)

    def flag(self, name: str, default: Any = _REQUIRED) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._wrong(name, "true or false", value)
        return value

    def items(self, name: str, default: Any = _REQUIRED) -> list[Any]:
        if name not in self.data and default is not _REQUIRED:
            return list(default)
        value = self._get(name, _REQUIRED)
        if not isinstance(value, list):
            raise self._wrong(name, "a list", value)
        return value

    def texts(self, name: str, default: Any = _REQUIRED) -> tuple[str, ...]:
        values = self.items(name, default)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise self._wrong(f"{name}[{index}]", "a string", value)
        return tuple(values)

    def objects(self, name: str, default: Any = _REQUIRED) -> list[_Fields]:
        return [
            _Fields(item, f"{self.where}.{name}[{index}]")
            for index, item in enumerate(self.items(name, default))
        ]

    def mapping(self, name: str) -> _Fields:
        return _Fields(self._get(name, _REQUIRED), f"{self.where}.{name}")


@dataclass(frozen=True)
class InstanceRef:
    """One routed instance of an exam job, by its DICOM UIDs."""

    StudyInstanceUID: str
    SeriesInstanceUID: str
    SOPInstanceUID: str

    def to_json(self) -> dict[str, Any]:
        return {
            "StudyInstanceUID": self.StudyInstanceUID,
            "SeriesInstanceUID": self.SeriesInstanceUID,
            "SOPInstanceUID": self.SOPInstanceUID,
        }

    @classmethod
    def _read(cls, fields: _Fields) -> InstanceRef:
        return cls(
            StudyInstanceUID=fields.text("StudyInstanceUID"),
            SeriesInstanceUID=fields.text("SeriesInstanceUID"),
            SOPInstanceUID=fields.text("SOPInstanceUID"),
        )


@dataclass(frozen=True)
class ExamRequest:
    """What an exam job asks for (``job.payload``): the routed instances of one study.

    ``views`` are the view labels present ("R CC", ...), ``missing_views`` the expected ones
    still absent when the job was queued; ``revision`` is n for the n-th re-analysis.
    ``modality`` says which analysis the exam gets: "MG" (the mammography model) or "MR"
    (the DCE kinetic CAD, node.mri); written only for MR, so mammography rows keep their shape.
    """

    orthanc_study_id: str
    instances: tuple[InstanceRef, ...]
    views: tuple[str, ...] = ()
    missing_views: tuple[str, ...] = ()
    revision: int = 0
    modality: Literal["MG", "MR"] = "MG"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "orthanc_study_id": self.orthanc_study_id,
            "instances": [ref.to_json() for ref in self.instances],
            "views": list(self.views),
            "missing_views": list(self.missing_views),
            "revision": self.revision,
        }
        if self.modality != "MG":
            data["modality"] = self.modality
        return data

    @classmethod
    def from_json(cls, data: object) -> ExamRequest:
        fields = _Fields(data, "payload")
        return cls(
            orthanc_study_id=fields.text("orthanc_study_id"),
            instances=tuple(InstanceRef._read(f) for f in fields.objects("instances")),
            views=fields.texts("views", ()),
            missing_views=fields.texts("missing_views", ()),
            revision=fields.integer("revision", 0),
            modality=_modality(fields),
        )


def _modality(fields: _Fields) -> Literal["MG", "MR"]:
    value = fields.data.get("modality", "MG")
    if value not in ("MG", "MR"):
        raise ValueError(f"{fields.where}.modality must be MG or MR, not {value!r}")
    return "MR" if value == "MR" else "MG"


@dataclass(frozen=True)
class ImageSummary:
    """One scored image of an exam, as the job result keeps it."""

    SOPInstanceUID: str
    ImageLaterality: str
    ViewPosition: str
    score: float
    findings: int  # how many findings, numbered across the exam in image order
    compared: bool | None = None  # ImagePrediction.compared; absent from older rows

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "SOPInstanceUID": self.SOPInstanceUID,
            "ImageLaterality": self.ImageLaterality,
            "ViewPosition": self.ViewPosition,
            "score": self.score,
            "findings": self.findings,
        }
        if self.compared is not None:
            data["compared"] = self.compared
        return data

    @classmethod
    def _read(cls, fields: _Fields) -> ImageSummary:
        return cls(
            SOPInstanceUID=fields.text("SOPInstanceUID"),
            ImageLaterality=fields.text("ImageLaterality"),
            ViewPosition=fields.text("ViewPosition"),
            score=fields.number("score"),
            findings=fields.integer("findings"),
            compared=fields.flag("compared") if "compared" in fields.data else None,
        )


@dataclass(frozen=True)
class SkippedImage:
    """An instance of the exam that was not scored, and why (never patient data)."""

    SOPInstanceUID: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"SOPInstanceUID": self.SOPInstanceUID, "reason": self.reason}

    @classmethod
    def _read(cls, fields: _Fields) -> SkippedImage:
        return cls(SOPInstanceUID=fields.text("SOPInstanceUID"), reason=fields.text("reason"))


@dataclass(frozen=True)
class OutputSummary:
    """One result object the node wrote for the exam (SR, SEG, GSPS, ...)."""

    kind: str
    SOPInstanceUID: str
    SOPClassUID: str
    SeriesInstanceUID: str
    Modality: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "SOPInstanceUID": self.SOPInstanceUID,
            "SOPClassUID": self.SOPClassUID,
            "SeriesInstanceUID": self.SeriesInstanceUID,
            "Modality": self.Modality,
        }

    @classmethod
    def _read(cls, fields: _Fields) -> OutputSummary:
        return cls(
            kind=fields.text("kind"),
            SOPInstanceUID=fields.text("SOPInstanceUID"),
            SOPClassUID=fields.text("SOPClassUID"),
            SeriesInstanceUID=fields.text("SeriesInstanceUID"),
            Modality=fields.text("Modality"),
        )


@dataclass(frozen=True)
class MriLesionSummary:
    """One lesion candidate of the DCE kinetic CAD, as the job result keeps it."""

    number: int
    laterality: str  # "L" / "R"
    quadrant: str  # "upper outer", ...
    curve: str  # delayed-phase curve type: "persistent", "plateau" or "washout"
    volume_mm3: float
    max_enhancement_percent: float
    ser: float  # mean signal enhancement ratio
    score: float  # rule-based kinetic score in [0, 1], not a probability

    @classmethod
    def _read(cls, f: _Fields) -> MriLesionSummary:
        return cls(
            f.integer("number"),
            f.text("laterality"),
            f.text("quadrant"),
            f.text("curve"),
            *(f.number(n) for n in ("volume_mm3", "max_enhancement_percent", "ser", "score")),
        )


@dataclass(frozen=True)
class IgnoredSeriesSummary:
    """A series of a DCE-MRI study left out of the analysis, and why."""

    SeriesInstanceUID: str
    reason: str


@dataclass(frozen=True)
class MriSummary:
    """What a DCE-MRI job found besides the common fields: the time series it analysed,
    the motion check, the series it left out (with the reason) and the lesion candidates."""

    phases: int
    slices: int
    motion_mm: float
    motion_flagged: bool
    lesions: tuple[MriLesionSummary, ...]
    ignored_series: tuple[IgnoredSeriesSummary, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "lesions": [asdict(x) for x in self.lesions],
            "ignored_series": [asdict(x) for x in self.ignored_series],
        }

    @classmethod
    def _read(cls, f: _Fields) -> MriSummary:
        return cls(
            phases=f.integer("phases"),
            slices=f.integer("slices"),
            motion_mm=f.number("motion_mm"),
            motion_flagged=f.flag("motion_flagged"),
            lesions=tuple(MriLesionSummary._read(x) for x in f.objects("lesions")),
            ignored_series=tuple(
                IgnoredSeriesSummary(x.text("SeriesInstanceUID"), x.text("reason"))
                for x in f.objects("ignored_series")
            ),
        )


@dataclass(frozen=True)
class ExamSummary:
    """What the job table keeps of a done exam (``job.result``): UIDs, scores and reasons,
    never patient data. ``deliveries`` are the delivery room's own views, kept as given."""

    model: str  # ModelSpec.ref
    score: float
    recall: bool
    breasts: Mapping[Laterality, float | None]
    images: tuple[ImageSummary, ...]
    skipped: tuple[SkippedImage, ...]
    outputs: tuple[OutputSummary, ...]
    published: Mapping[str, int]  # instances each destination accepted
    complete: bool = True
    missing_views: tuple[str, ...] = ()
    revision: int = 0
    deliveries: tuple[Mapping[str, Any], ...] = ()
    mri: MriSummary | None = None  # DCE-MRI exams only (written only for them)
    # Output kinds that could not be built valid, and why (written only when there are some).
    output_failures: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": self.model,
            "score": self.score,
            "recall": self.recall,
            "complete": self.complete,
            "missing_views": list(self.missing_views),
            "revision": self.revision,
            "breasts": {lat: self.breasts.get(lat) for lat in ("L", "R")},
            "images": [image.to_json() for image in self.images],
            "skipped": [skipped.to_json() for skipped in self.skipped],
            "outputs": [output.to_json() for output in self.outputs],
            "published": dict(self.published),
            "deliveries": [dict(delivery) for delivery in self.deliveries],
        }
        if self.mri is not None:
            data["mri"] = self.mri.to_json()
        if self.output_failures:
            data["output_failures"] = dict(self.output_failures)
        return data

    @classmethod
    def from_json(cls, data: object) -> ExamSummary:
        fields = _Fields(data, "result")
        breasts = fields.mapping("breasts")
        sides: dict[Laterality, float | None] = {}
        for side in ("L", "R"):
            sides[side] = None if breasts._get(side, _REQUIRED) is None else breasts.number(side)
        published = fields.mapping("published")
        return cls(
            model=fields.text("model"),
            score=fields.number("score"),
            recall=fields.flag("recall"),
            breasts=sides,
            images=tuple(ImageSummary._read(f) for f in fields.objects("images")),
            skipped=tuple(SkippedImage._read(f) for f in fields.objects("skipped")),
            outputs=tuple(OutputSummary._read(f) for f in fields.objects("outputs")),
            published={name: published.integer(name) for name in published.data},
            complete=fields.flag("complete", True),
            missing_views=fields.texts("missing_views", ()),
            revision=fields.integer("revision", 0),
            deliveries=tuple(f.data for f in fields.objects("deliveries", ())),
            mri=MriSummary._read(fields.mapping("mri")) if "mri" in fields.data else None,
            output_failures=_failures(fields),
        )


def _failures(fields: _Fields) -> dict[str, str]:
    if "output_failures" not in fields.data:
        return {}
    failures = fields.mapping("output_failures")
    return {kind: failures.text(kind) for kind in failures.data}
