"""DICOM folders (any depth): de-identified on the way in, labels from an optional CSV.

Laterality and view come from ``node.dicom.views``, the reader the node serves with, so an
image is oriented the same way in training as in service; the woman and the exam come from
its ``identity`` rule (archives that give every view its own patient and study, as CBIS-DDSM
does, still make one woman with one exam).
"""

from __future__ import annotations

import csv
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from tqdm import tqdm

from node.datasets import qc
from node.datasets.deid import Pseudonymiser, deidentify
from node.datasets.importers.collector import Collector, ImportOptions
from node.datasets.importers.roi import RoiMasks, attach_masks
from node.datasets.manifest import ImageRecord
from node.dicom import views
from node.dicom.pixels import presentation_pixels
from node.dicom.uids import derive_uid
from node.errors import DatasetError, InvalidInput


@dataclass(frozen=True)
class DicomLabel:
    """Truth for one DICOM image, from a labels CSV (matched before de-identification)."""

    label: str
    abnormality: str = ""
    density_acr: str = ""
    patient_id: str = ""  # overrides the header's (CBIS-DDSM keys images by patient_id too)
    laterality: str = ""
    view: str = ""


LabelLookup = Callable[[Path, Dataset], DicomLabel | None]


def _dicom_files(source: Path) -> list[Path]:
    return sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))


def _read_dicom(path: Path) -> Dataset:
    with path.open("rb") as f:
        head = f.read(132)
    if head[128:132] != b"DICM":
        raise InvalidDicomError("no DICM preamble (PS3.10 7.1)")
    return pydicom.dcmread(path)


def _assign_identity(ds: Dataset, truth: DicomLabel) -> None:
    """Patient ID and Study Instance UID of the woman and exam, before de-identification
    pseudonymises them: a labels CSV's patient wins, else ``views.identity``."""
    found = views.identity(views.dataset_getter(ds))
    if truth.patient_id:
        ds.PatientID = truth.patient_id
    elif found.patient_id:
        ds.PatientID = found.patient_id
    if found.per_image and found.study_key:
        ds.StudyInstanceUID = derive_uid("mammo-node exam", found.study_key)


def import_dicom(
    options: ImportOptions, collector: Collector, lookup: LabelLookup | None = None
) -> None:
    """DICOM files under the source folder (any depth), de-identified on the way in; ROI
    masks (CBIS-DDSM) become lesion masks of their images (``node.datasets.importers.roi``)."""
    rois = RoiMasks()
    secret = secrets.token_bytes(32)
    pseudonyms = Pseudonymiser(secret)
    if options.keep_dicom:
        (options.out / "dicom").mkdir(parents=True, exist_ok=True)
    for path in tqdm(_dicom_files(options.source), desc="DICOM", unit="file"):
        try:
            ds = _read_dicom(path)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as exc:
            collector.reject(str(path), qc.UNREADABLE, f"not readable DICOM: {exc}")
            continue
        if rois.offer(path, ds):
            continue
        problem = qc.check_header(ds, options.modalities)
        if problem:
            collector.reject(str(path), *problem)
            continue
        truth = lookup(path, ds) if lookup else DicomLabel("unknown")
        if truth is None:
            collector.reject(str(path), qc.NO_LABEL, "no row of the labels CSV matches it")
            continue
        try:
            pixels = presentation_pixels(ds)
        except InvalidInput as exc:
            collector.reject(str(path), qc.UNREADABLE, str(exc))
            continue
        found = views.normalise_dataset(ds)
        source_patient = str(ds.get("PatientID", "")).strip()
        laterality = truth.laterality or found.laterality
        view = truth.view or found.view
        _assign_identity(ds, truth)
        try:
            patient = deidentify(ds, pseudonyms, options.clean_descriptors)
        except DatasetError as exc:
            collector.reject(str(path), qc.NO_PATIENT, str(exc))
            continue
        image_id = f"{patient}-{laterality or 'U'}{view or 'X'}-{str(ds.SOPInstanceUID)[-8:]}"
        record = ImageRecord(
            image_id=image_id,
            patient_id=patient,
            laterality=laterality,
            view=view,
            label=truth.label,
            abnormality=truth.abnormality,
            density_acr=truth.density_acr,
            source=options.format,
        )
        if collector.add(str(path), pixels, 16, record):
            rois.images[source_patient] = image_id
            if options.keep_dicom:
                ds.save_as(options.out / "dicom" / f"{image_id}.dcm", enforce_file_format=True)
    attach_masks(rois, collector)
    if options.reid_key is not None:
        pseudonyms.write_key(options.reid_key)


def sop_labels(paths: Sequence[Path]) -> LabelLookup:
    """Generic labels CSV: SOPInstanceUID, label[, abnormality, density_acr]."""
    table: dict[str, DicomLabel] = {}
    for path in paths:
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    table[row["SOPInstanceUID"].strip()] = DicomLabel(
                        label=row["label"].strip().lower(),
                        abnormality=row.get("abnormality", "").strip(),
                        density_acr=row.get("density_acr", "").strip().lower(),
                    )
                except KeyError as exc:
                    raise DatasetError(f"{path}: needs columns SOPInstanceUID and label") from exc
    return lambda _path, ds: table.get(str(ds.get("SOPInstanceUID", "")))
