"""CBIS-DDSM ROI masks: found beside the images, matched to them, stored as lesion masks.

Why: CBIS-DDSM (TCIA) outlines every abnormality as a binary ROI mask, so a site's
CBIS-style data can supervise the lesion head as mini-MIAS centre + radius circles do.

TCIA's layout: the full mammogram's Patient ID is ``Mass-Test_P_00173_LEFT_CC``; the n-th
abnormality of that image is a series whose Patient ID adds ``_n`` and which holds two
instances, the ROI mask (Series Description "ROI mask images", pixels 0 and the maximum) and
a crop of the lesion ("cropped images"; older releases put both in one series, and the
case-description CSVs sometimes swap their paths, so the pixels decide: two values and the
image's size make a mask, grey values and a smaller size a crop, refused as such). A mask is
matched to the image whose Patient ID is its own without ``_n``, the same folder names the
CSVs use ("ROI mask file path"). A mask of another size than its image is refused, never
rescaled: CBIS-DDSM has such masks, and a guessed registration would teach the wrong cells.

In the dataset (``node.datasets.manifest``): ``masks/<image_id>.png``, 8-bit, same size as
the stored image, 0 outside every lesion and k inside the k-th lesion of the manifest row
(``lesions``), whose centre is the mask's centroid and whose radius is the equivalent radius
sqrt(area / pi), so code that reads circles reads masked lesions too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from node.datasets import qc
from node.datasets.importers.collector import Collector
from node.datasets.manifest import Lesion
from node.errors import DatasetError

_ABNORMALITY_SUFFIX = re.compile(r"^(?P<image>.+)_(?P<number>\d+)$")
_ROI_PATIENT = re.compile(r"_(?:LEFT|RIGHT)_(?:CC|MLO|ML|LM|XCCL|XCCM)_\d+$", re.IGNORECASE)
MAX_LESIONS = 255  # one 8-bit value per lesion of an image


@dataclass
class RoiMasks:
    """ROI series files seen during an import, and the images they may belong to."""

    files: dict[str, list[tuple[int, Path]]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # source Patient ID -> image_id

    def offer(self, path: Path, ds: Dataset) -> bool:
        """True (and kept for ``attach_masks``) when the file belongs to an ROI series."""
        patient = str(ds.get("PatientID", "")).strip()
        if not is_roi_file(ds):
            return False
        match = _ABNORMALITY_SUFFIX.match(patient)
        key, number = (match.group("image"), int(match.group("number"))) if match else (patient, 0)
        self.files.setdefault(key, []).append((number, path))
        return True


def is_roi_file(ds: Dataset) -> bool:
    """An ROI series of CBIS-DDSM: named so in Series Description ("ROI mask images",
    "cropped images"), or a Patient ID with an abnormality number after the view. TCIA's
    older release put the crop and the mask in one series and its CSVs sometimes swap the
    two paths, so which is which is decided by the pixels (``attach_masks``), not the name."""
    description = str(ds.get("SeriesDescription", "")).lower()
    patient = str(ds.get("PatientID", "")).strip()
    return (
        "roi mask" in description or "cropped" in description or bool(_ROI_PATIENT.search(patient))
    )


def _roi_pixels(path: Path) -> npt.NDArray[np.floating]:
    """Stored values, not presentation pixels: a MONOCHROME1 or VOI-windowed mask must not
    turn its background into the lesion."""
    try:
        return np.asarray(pydicom.dcmread(path).pixel_array, dtype=np.float32)
    except (InvalidDicomError, OSError, ValueError, AttributeError, NotImplementedError) as exc:
        raise DatasetError(f"{path}: ROI file not readable: {exc}") from exc


def as_mask(path: Path, pixels: npt.NDArray[np.floating]) -> npt.NDArray[np.bool_]:
    """An ROI mask's pixels as booleans (the higher value is the lesion, as CBIS-DDSM stores
    255 inside, 0 outside); refused unless they hold exactly two values."""
    values = np.unique(pixels)
    if len(values) != 2:
        raise DatasetError(f"{path}: an ROI mask holds 2 pixel values, this one {len(values)}")
    return np.asarray(pixels > values[0])


def read_mask(path: Path) -> npt.NDArray[np.bool_]:
    """The ROI mask in a DICOM file, as booleans (see ``as_mask``)."""
    return as_mask(path, _roi_pixels(path))


def lesion_of(mask: npt.NDArray[np.bool_]) -> Lesion:
    """Centroid and equivalent radius sqrt(area / pi) of one lesion's mask."""
    rows, cols = np.nonzero(mask)
    return Lesion(
        column=round(float(cols.mean()), 2),
        row=round(float(rows.mean()), 2),
        radius=round(float(np.sqrt(len(rows) / np.pi)), 2),
    )


def attach_masks(found: RoiMasks, collector: Collector) -> None:
    """Write each accepted image's lesion mask and lesions; refuse (never drop) the rest."""
    by_id = {r.image_id: k for k, r in enumerate(collector.result.records)}
    (collector.out / "masks").mkdir(exist_ok=True)
    for key, entries in sorted(found.files.items()):
        image_id = found.images.get(key)
        if image_id is None or image_id not in by_id:
            for _, path in entries:
                collector.reject(str(path), qc.NO_IMAGE, f"no accepted image has Patient ID {key}")
            continue
        k = by_id[image_id]
        record = collector.result.records[k]
        with Image.open(collector.out / record.path) as stored:
            shape = stored.size[::-1]
        labels = np.zeros(shape, np.uint8)
        lesions = list(record.lesions)
        for _, path in sorted(entries):
            problem = _add_lesion(path, shape, image_id, record.label, labels, lesions)
            if problem:
                collector.reject(str(path), *problem)
        if len(lesions) == len(record.lesions):
            continue
        relative = f"masks/{image_id}.png"
        Image.fromarray(labels).save(collector.out / relative)
        collector.result.records[k] = replace(record, lesions=tuple(lesions), mask=relative)


def _add_lesion(
    path: Path,
    shape: tuple[int, int],
    image_id: str,
    label: str,
    labels: npt.NDArray[np.uint8],
    lesions: list[Lesion],
) -> tuple[str, str] | None:
    """Paint one ROI file's lesion into ``labels``; else (reason, detail) for rejected.csv."""
    try:
        pixels = _roi_pixels(path)
    except DatasetError as exc:
        return qc.BAD_MASK, str(exc)
    grey = len(np.unique(pixels)) > 2
    if grey and pixels.shape[0] * pixels.shape[1] < shape[0] * shape[1]:
        return (
            qc.ROI_CROP,
            "a lesion crop (grey values, smaller than its image); the mask locates it",
        )
    if grey:
        return qc.BAD_MASK, f"{path}: an ROI mask holds 2 pixel values, this one more"
    if pixels.shape != shape:
        return qc.BAD_MASK, (
            f"ROI mask is {pixels.shape[0]}x{pixels.shape[1]} (rows x columns), its image "
            f"{image_id} is {shape[0]}x{shape[1]}: refusing to guess the registration"
        )
    if label == "normal":
        return qc.BAD_MASK, f"{image_id} is labelled normal"
    if len(lesions) >= MAX_LESIONS:
        return qc.BAD_MASK, f"more than {MAX_LESIONS} lesions on {image_id}"
    try:
        mask = as_mask(path, pixels)
    except DatasetError as exc:
        return qc.BAD_MASK, f"{exc} (it outlines nothing)"
    lesions.append(lesion_of(mask))
    labels[mask] = len(lesions)
    return None
