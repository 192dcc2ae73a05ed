"""In-memory stand-ins for the node's peers, for the fast tests of the worker, the pipeline,
intake and reconciliation. Each implements the same Protocol as the real part
(``ImageModel``, ``InstanceSource``, ``Publisher``, ``StudySource``, ``ChangeLog``), so mypy holds them to it;
everything else (job store on SQLite, the shipped model, the writers) is the real thing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.multival import MultiValue

from node.config import Destination
from node.db import create_engine
from node.delivery.publishers import Publisher
from node.dicom.part10 import Part10File, part10_bytes
from node.domain import Finding, ImagePrediction, ModelSpec
from node.errors import InvalidInput, NotFound, PeerUnavailable, RetryableError
from node.inference.scoring import ImageModel
from node.ingest.intake import StudySource
from node.ingest.reconcile import ChangeLog
from node.jobs.pipeline import InstanceSource
from node.jobs.store import JobStore
from node.models.registry import find_model
from node.net.orthanc_rest import Change, InstanceTags
from node.synthetic.dicom import synthetic_exam

MODELS = Path(__file__).resolve().parent.parent / "models"
SHIPPED_REF = "synthetic-unet/0.1.0"


class Clock:
    """A clock the test moves by hand (the store's leases and backoff read it)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def job_store(folder: Path, clock: Clock) -> JobStore:
    """A real job store on a SQLite file (WAL, as the node runs it)."""
    return JobStore(create_engine(f"sqlite:///{folder / 'jobs.sqlite'}"), clock=clock)


class MemoryModel:
    """ImageModel: the shipped model's spec, and a prediction computed in microseconds
    (the brightest spot is the finding), so stage tests need no network on the CPU."""

    def __init__(self) -> None:
        self.spec: ModelSpec = find_model(MODELS, SHIPPED_REF).spec
        self.calls: list[str] = []  # the laterality of each image scored

    def predict(
        self, pixels: npt.NDArray[np.floating] | npt.NDArray[np.integer], laterality: str
    ) -> ImagePrediction:
        self.calls.append(laterality)
        image = np.asarray(pixels, dtype=np.float32)
        row, column = np.unravel_index(int(np.argmax(image)), image.shape)
        score = float(image.max() - image.mean())
        heatmap = np.zeros(image.shape, dtype=np.float32)
        heatmap[max(0, row - 8) : row + 8, max(0, column - 8) : column + 8] = score
        findings = []
        if score >= self.spec.finding_threshold:
            findings.append(Finding(column=float(column), row=float(row), radius=8.0, score=score))
        return ImagePrediction(score=score, heatmap=heatmap, findings=findings)


def small_exam(seed: int, lesions: int = 1) -> list[pydicom.Dataset]:
    """The four synthetic screening views, small enough for fast tests."""
    return [
        ds for ds, _truth in synthetic_exam(seed, rows=256, columns=208, lesions_per_image=lesions)
    ]


class MemoryDicomWeb:
    """InstanceSource: WADO-RS from a dict; each retrieval is a fresh parse of the bytes."""

    def __init__(self, datasets: Sequence[pydicom.Dataset] = ()) -> None:
        self.stored: dict[str, bytes] = {}
        self.retrieved: list[str] = []
        for dataset in datasets:
            self.stored[str(dataset.SOPInstanceUID)] = part10_bytes(dataset)

    def retrieve_instance(
        self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> pydicom.Dataset:
        self.retrieved.append(sop_instance_uid)
        if sop_instance_uid not in self.stored:
            raise InvalidInput(f"instance {sop_instance_uid} is no longer in memory")
        return pydicom.dcmread(io.BytesIO(self.stored[sop_instance_uid]))


class MemoryPublisher:
    """Publisher: keeps what it was sent; ``down`` makes every attempt a retryable failure."""

    def __init__(self, name: str = "pacs", outputs: tuple[str, ...] = ()) -> None:
        self.destination = Destination(
            name=name, url="http://memory.invalid/dicom-web", outputs=outputs
        )
        self.sent: list[pydicom.Dataset] = []
        self.down = False

    def publish(self, files: Sequence[Part10File]) -> int:
        if self.down:
            raise RetryableError(f"{self.destination.name}: down")
        self.sent += [file.dataset() for file in files]
        return len(files)


def simplified_tags(dataset: pydicom.Dataset) -> dict[str, Any]:
    """Orthanc's simplified-tags view of a dataset: keyword -> text, sequences as lists."""
    tags: dict[str, Any] = {}
    for element in dataset:
        if not element.keyword or element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        if element.VR == "SQ":
            tags[element.keyword] = [simplified_tags(item) for item in element.value]
        elif isinstance(element.value, MultiValue):
            tags[element.keyword] = "\\".join(str(v) for v in element.value)
        else:
            tags[element.keyword] = "" if element.value is None else str(element.value)
    return tags


class MemoryOrthanc:
    """StudySource and ChangeLog: studies, their instances' tags and a /changes log."""

    def __init__(self) -> None:
        self.studies: dict[str, list[str]] = {}
        self.tags: dict[str, InstanceTags] = {}
        self.log: list[Change] = []
        self.pages: list[tuple[int, int]] = []  # (since, limit) of each /changes call
        self.unavailable: set[str] = set()  # studies whose reads fail as if Orthanc were down
        self.unstable: set[str] = set()  # studies still within Orthanc's stability delay

    def store(self, study_id: str, datasets: Sequence[pydicom.Dataset]) -> None:
        """Store instances in a study (Orthanc ids are made up) without a change."""
        for dataset in datasets:
            instance_id = f"{study_id}-{dataset.SOPInstanceUID}"
            header = simplified_tags(dataset)
            self.tags[instance_id] = InstanceTags(
                orthanc_id=instance_id,
                SOPInstanceUID=str(dataset.SOPInstanceUID),
                SOPClassUID=str(dataset.SOPClassUID),
                SeriesInstanceUID=str(dataset.SeriesInstanceUID),
                StudyInstanceUID=str(dataset.StudyInstanceUID),
                Modality=str(dataset.get("Modality", "")),
                PresentationIntentType=str(dataset.get("PresentationIntentType", "")),
                Manufacturer=str(dataset.get("Manufacturer", "")),
                header=header,
            )
            self.studies.setdefault(study_id, []).append(instance_id)

    def change(self, change_type: str, resource_id: str, resource_type: str = "Study") -> int:
        seq = len(self.log) + 1
        self.log.append(Change(seq, change_type, resource_type, resource_id))
        return seq

    def stable_study(self, study_id: str, datasets: Sequence[pydicom.Dataset]) -> int:
        """Store a study and log it as stable, as Orthanc does after its stability delay."""
        self.store(study_id, datasets)
        return self.change("StableStudy", study_id)

    def delete(self, study_id: str) -> None:
        for instance_id in self.studies.pop(study_id):
            del self.tags[instance_id]

    # -- StudySource --------------------------------------------------------------------

    def study_instances(self, study_id: str, *, except_manufacturer: str = "") -> list[str]:
        if study_id in self.unavailable:
            raise PeerUnavailable("Orthanc: ConnectError: connection refused")
        if study_id not in self.studies:  # as OrthancRest answers a 404
            raise NotFound(f"/studies/{study_id}/instances")
        return [
            i
            for i in self.studies[study_id]
            if not except_manufacturer or self.tags[i].Manufacturer != except_manufacturer
        ]

    def instance_tags(self, instance_id: str) -> InstanceTags:
        if instance_id not in self.tags:
            raise NotFound(f"/instances/{instance_id}/simplified-tags")
        return self.tags[instance_id]

    # -- ChangeLog ----------------------------------------------------------------------

    def study_is_stable(self, study_id: str) -> bool:
        self.study_instances(study_id)  # NotFound / PeerUnavailable as a read would
        return study_id not in self.unstable

    def changes(self, since: int, limit: int = 100) -> tuple[list[Change], int, bool]:
        self.pages.append((since, limit))
        after = [change for change in self.log if change.seq > since]
        page = after[:limit]
        last = page[-1].seq if page else since
        return page, last, len(after) <= limit


if TYPE_CHECKING:  # the stand-ins are held to the real clients' Protocols by mypy
    _model: ImageModel = MemoryModel()
    _source: InstanceSource = MemoryDicomWeb()
    _publisher: Publisher = MemoryPublisher()
    _orthanc: StudySource = MemoryOrthanc()
    _changes: ChangeLog = MemoryOrthanc()
