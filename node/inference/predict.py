"""Batch prediction over image files, for ``mammo-node predict`` and offline evaluation.

Files are grouped into exams before scoring, so an exam-aware model compares each breast with
the other breast of the same view, as the node does: DICOM files by woman and exam
(``node.dicom.views.identity``) with laterality and view from the same reader the node uses
(``normalise_dataset``); image files (PNG, PGM) by the rows of a manifest CSV
(``path, patient, laterality, view``). A file with neither is an exam of its own.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from node.dicom.pixels import read_image_file
from node.dicom.views import dataset_getter, identity, normalise_dataset
from node.domain import ExamImage
from node.errors import InvalidInput
from node.inference.scoring import ImageModel, predict_exam

MANIFEST_COLUMNS = ("path", "patient", "laterality", "view")


@dataclass(frozen=True)
class ManifestRow:
    """What a manifest says of one image file."""

    patient: str
    laterality: str
    view: str


@dataclass(frozen=True)
class _Read:
    path: Path
    exam: str
    image: ExamImage


def read_manifest_csv(path: Path) -> dict[Path, ManifestRow]:
    """``path, patient, laterality, view`` per image file; paths relative to the CSV's folder."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise InvalidInput(f"{path}: missing columns {sorted(missing)}")
            rows = list(reader)
    except OSError as exc:
        raise InvalidInput(f"cannot read manifest {path}: {exc}") from exc
    out: dict[Path, ManifestRow] = {}
    for number, row in enumerate(rows, start=2):
        side = (row["laterality"] or "").strip().upper()
        if side not in ("L", "R", ""):
            raise InvalidInput(f"{path}:{number}: laterality must be L, R or empty, not {side!r}")
        file = Path(row["path"].strip())
        out[(file if file.is_absolute() else path.parent / file).resolve()] = ManifestRow(
            (row["patient"] or "").strip(), side, (row["view"] or "").strip().upper()
        )
    return out


def _read(path: Path, manifest: Mapping[Path, ManifestRow]) -> _Read:
    pixels: npt.NDArray[np.floating] | npt.NDArray[np.integer]
    pixels, ds = read_image_file(path)
    row = manifest.get(path.resolve())
    if row is not None:
        exam = f"manifest:{row.patient}" if row.patient else f"file:{path}"
        return _Read(path, exam, ExamImage(pixels, row.laterality, row.view))
    if ds is None:
        return _Read(path, f"file:{path}", ExamImage(pixels, "", ""))
    who = identity(dataset_getter(ds))
    found = normalise_dataset(ds)
    exam = f"dicom:{who.patient_id}/{who.study_key}" if who.study_key else f"file:{path}"
    return _Read(path, exam, ExamImage(pixels, found.laterality, found.view))


def predict_paths(
    paths: Iterable[Path],
    model: ImageModel,
    manifest: Mapping[Path, ManifestRow] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one result row per file, in pixel coordinates of that file's image.

    A file that cannot be read or used yields ``{"path", "error"}`` and the run goes on.
    ``compared`` says whether the breast was compared with the other breast (exam-aware
    models; absent for models that score each image alone).
    """
    exams: dict[str, list[_Read]] = {}
    order: list[Path] = []
    rows: dict[Path, dict[str, Any]] = {}
    for path in paths:
        order.append(path)
        try:
            read = _read(path, manifest or {})
        except (InvalidInput, ValueError) as exc:
            rows[path] = {"path": str(path), "error": str(exc)}
            continue
        exams.setdefault(read.exam, []).append(read)
    for members in exams.values():
        try:
            predictions = predict_exam(model, [m.image for m in members])
        except (InvalidInput, ValueError) as exc:
            rows.update({m.path: {"path": str(m.path), "error": str(exc)} for m in members})
            continue
        for member, prediction in zip(members, predictions, strict=True):
            row: dict[str, Any] = {
                "path": str(member.path),
                "score": prediction.score,
                "findings": [
                    {"x": f.column, "y": f.row, "radius": f.radius, "score": f.score}
                    for f in prediction.findings
                ],
            }
            if prediction.compared is not None:
                row["compared"] = prediction.compared
            rows[member.path] = row
    for path in order:
        yield rows[path]
