"""The dataset layout every importer writes and every trainer/evaluator reads.

```
DATASET/
  dataset.yaml    id, source format, when, split seed/fraction (provenance of the whole set)
  manifest.csv    one row per accepted image (columns: ``COLUMNS``)
  rejected.csv    one row per refused file, with the quality-control reason
  images/         <image_id>.png, 8-bit or 16-bit grayscale presentation pixels
  masks/          <image_id>.png, 8-bit lesion masks where the source outlines lesions
                  (CBIS-DDSM ROI masks): 0 outside, k inside the row's k-th lesion
```

One layout for mini-MIAS, DICOM folders and CBIS-DDSM, so training and evaluation never care
where images came from. Lesions are stored as JSON ``[{"column", "row", "radius"}]`` in the
stored PNG's pixels with the row origin at the TOP (mini-MIAS counts from the bottom; the
importer converts); an outlined lesion's centre is its mask's centroid and its radius the
equivalent radius sqrt(area / pi), so circle-reading code reads both. Splits are by patient: every image of a woman is in the same split.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from PIL import Image

from node.errors import DatasetError

LABELS = ("normal", "benign", "malignant", "unknown")
SPLITS = ("train", "val", "test", "")
LATERALITIES = ("L", "R", "")
DENSITIES = ("fatty", "glandular", "dense", "")
ACR_DENSITIES = ("a", "b", "c", "d", "")
MANIFEST = "manifest.csv"
REJECTED = "rejected.csv"
DATASET_YAML = "dataset.yaml"


@dataclass(frozen=True)
class Lesion:
    """A lesion's centre and radius in the stored image's pixels (row 0 = top)."""

    column: float
    row: float
    radius: float

    def __post_init__(self) -> None:
        if not all(np.isfinite([self.column, self.row, self.radius])) or self.radius <= 0:
            raise DatasetError(f"lesion needs finite centre and radius > 0, got {self}")


@dataclass(frozen=True)
class ImageRecord:
    """One manifest row: an accepted image with its truth and provenance."""

    image_id: str
    patient_id: str
    laterality: str
    view: str
    label: str
    abnormality: str = ""  # e.g. CIRC, CALC, mass, calcification; "" for normal
    density: str = ""  # fatty / glandular / dense (mini-MIAS background tissue)
    density_acr: str = ""  # BI-RADS a-d, where the source states it
    lesions: tuple[Lesion, ...] = field(default_factory=tuple)
    split: str = ""
    source: str = ""
    sha256: str = ""  # of the pixel array (dtype, shape and bytes), for duplicate detection
    path: str = ""  # relative to the dataset folder
    mask: str = ""  # lesion mask PNG relative to the dataset folder, "" when none

    def __post_init__(self) -> None:
        if not self.image_id or not self.patient_id:
            raise DatasetError(f"image_id and patient_id are required, got {self!r}")
        checks = (
            ("label", self.label, LABELS),
            ("laterality", self.laterality, LATERALITIES),
            ("density", self.density, DENSITIES),
            ("density_acr", self.density_acr, ACR_DENSITIES),
            ("split", self.split, SPLITS),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise DatasetError(f"{self.image_id}: {name} {value!r} not in {allowed}")
        if self.label == "normal" and self.lesions:
            raise DatasetError(f"{self.image_id}: a normal image cannot have lesions")

    @property
    def is_abnormal(self) -> bool:
        return self.label in ("benign", "malignant")

    def with_split(self, split: str) -> ImageRecord:
        return replace(self, split=split)


COLUMNS = tuple(f.name for f in fields(ImageRecord))
OPTIONAL_COLUMNS = frozenset({"mask"})  # absent from manifests written before masks


def pixel_sha256(pixels: npt.NDArray[Any]) -> str:
    """Hash of the pixel values (not the file), so re-encoded copies are still duplicates."""
    array = np.ascontiguousarray(pixels)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def _row(record: ImageRecord) -> dict[str, str]:
    row = {k: str(v) for k, v in asdict(record).items() if k != "lesions"}
    row["lesions"] = json.dumps(
        [{"column": x.column, "row": x.row, "radius": x.radius} for x in record.lesions]
    )
    return row


def write_manifest(folder: Path, records: Sequence[ImageRecord]) -> Path:
    """Write manifest.csv sorted by image id (stable diffs); returns its path."""
    path = folder / MANIFEST
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for record in sorted(records, key=lambda r: r.image_id):
            writer.writerow(_row(record))
    return path


def read_manifest(folder: Path) -> list[ImageRecord]:
    """Read and validate DATASET/manifest.csv; a bad row raises with its line number."""
    path = Path(folder) / MANIFEST
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    records = []
    for line, row in enumerate(rows, start=2):
        missing = set(COLUMNS) - set(row) - OPTIONAL_COLUMNS
        if missing:
            raise DatasetError(f"{path}:{line}: missing columns {sorted(missing)}")
        try:
            lesions = tuple(Lesion(**item) for item in json.loads(row["lesions"] or "[]"))
            values = {k: row.get(k) or "" for k in COLUMNS if k != "lesions"}
            records.append(ImageRecord(**values, lesions=lesions))
        except (ValueError, TypeError, DatasetError) as exc:
            raise DatasetError(f"{path}:{line}: {exc}") from exc
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: duplicate image ids")
    return records


def read_lesion_mask(folder: Path, record: ImageRecord) -> npt.NDArray[np.uint8] | None:
    """The stored lesion mask of a manifest row (k inside its k-th lesion), or None."""
    if not record.mask:
        return None
    path = Path(folder) / record.mask
    try:
        with Image.open(path) as image:
            labels = np.asarray(image, np.uint8)
    except OSError as exc:
        raise DatasetError(f"cannot read lesion mask {path}: {exc}") from exc
    return labels


def lesion_at(mask: npt.NDArray[np.uint8] | None, column: float, row: float) -> int:
    """The lesion mask's value at a point: k inside the k-th lesion, 0 outside or without one."""
    if mask is None:
        return 0
    r = min(max(round(row), 0), mask.shape[0] - 1)
    c = min(max(round(column), 0), mask.shape[1] - 1)
    return int(mask[r, c])


@dataclass(frozen=True)
class Rejection:
    """A file quality control refused, and why (never dropped silently)."""

    source: str
    reason: str
    detail: str = ""


def write_rejected(folder: Path, rejections: Iterable[Rejection]) -> Path:
    path = folder / REJECTED
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["source", "reason", "detail"])
        writer.writeheader()
        for item in rejections:
            writer.writerow(asdict(item))
    return path


def read_rejected(folder: Path) -> list[Rejection]:
    path = Path(folder) / REJECTED
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [Rejection(**row) for row in csv.DictReader(f)]


def write_dataset_info(folder: Path, info: dict[str, Any]) -> None:
    (folder / DATASET_YAML).write_text(yaml.safe_dump(info, sort_keys=False), encoding="utf-8")


def read_dataset_info(folder: Path) -> dict[str, Any]:
    """dataset.yaml; its ``id`` is what a model records as the dataset it trained on."""
    path = Path(folder) / DATASET_YAML
    try:
        info = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(info, dict) or not isinstance(info.get("id"), str):
        raise DatasetError(f"{path}: needs a mapping with a string 'id'")
    return info
