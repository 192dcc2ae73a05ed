"""Importers: mini-MIAS (images + labels CSV), DICOM folders, CBIS-DDSM (DICOM + case CSVs).

All three end in the same place: de-identified, quality-controlled PNGs plus manifest.csv
(see ``node.datasets.manifest``). Pixels are stored as displayed (presentation pixels, PS3.3
C.11), since that is what ``node.inference.runner.prepare`` sees when the node serves a model.
"""

from __future__ import annotations

import csv
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from scipy import ndimage
from tqdm import tqdm

from node.datasets import qc
from node.datasets.deid import Pseudonymiser, deidentify
from node.datasets.manifest import (
    MANIFEST,
    ImageRecord,
    Lesion,
    Rejection,
    pixel_sha256,
    write_dataset_info,
    write_manifest,
    write_rejected,
)
from node.datasets.split import assign_splits
from node.dicom.pixels import presentation_pixels, read_image_file
from node.errors import DatasetError, InvalidInput

FORMATS = ("mias", "dicom", "cbis-ddsm")
MIAS_DENSITY = {"F": "fatty", "G": "glandular", "D": "dense"}
MIAS_SEVERITY = {"B": "benign", "M": "malignant"}
_MIAS_ID = re.compile(r"^mdb(\d{3})$")


@dataclass
class ImportOptions:
    """What ``mammo-node data import`` was asked to do."""

    source: Path
    out: Path
    format: str
    dataset_id: str
    labels: Sequence[Path] = ()
    reid_key: Path | None = None
    val_fraction: float = 0.0
    seed: int = 0
    keep_dicom: bool = False
    clean_descriptors: bool = False
    modalities: frozenset[str] = frozenset({"MG"})
    force: bool = False
    crop_to_breast: bool = False


@dataclass
class ImportResult:
    records: list[ImageRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class _Collector:
    """Accepts images (QC on pixels, duplicates by pixel hash) and writes them as PNG."""

    def __init__(self, out: Path) -> None:
        self.out = out
        (out / "images").mkdir(parents=True, exist_ok=True)
        self.result = ImportResult()
        self._seen: dict[str, str] = {}

    def reject(self, source: str, reason: str, detail: str = "") -> None:
        self.result.rejected.append(Rejection(source, reason, detail))

    def add(
        self, source: str, pixels: npt.NDArray[np.floating], bits: int, record: ImageRecord
    ) -> bool:
        problem = qc.check_pixels(pixels)
        if problem:
            self.reject(source, *problem)
            return False
        stored = _quantise(pixels, bits)
        digest = pixel_sha256(stored)
        if digest in self._seen:
            self.reject(source, qc.DUPLICATE, f"same pixels as {self._seen[digest]}")
            return False
        self._seen[digest] = record.image_id
        relative = f"images/{record.image_id}.png"
        Image.fromarray(stored).save(self.out / relative, optimize=False)
        self.result.records.append(replace(record, sha256=digest, path=relative))
        return True


def _quantise(pixels: npt.NDArray[np.floating], bits: int) -> npt.NDArray[Any]:
    top = (1 << bits) - 1
    values = np.rint(np.clip(pixels, 0.0, 1.0) * top)
    return values.astype(np.uint8 if bits == 8 else np.uint16)


# ---------------------------------------------------------------- mini-MIAS


def breast_box(pixels: npt.NDArray[np.floating], margin: int = 8) -> tuple[int, int, int, int]:
    """(row0, col0, row1, col1) of the breast: the largest bright connected region.

    Digitised film (mini-MIAS) has black margins, film edges and labels around the breast,
    and its chest wall lies away from the image edge. Cropping to the breast makes such a
    scan look like a digital mammogram (breast against the chest-wall edge), which is what
    ``runner.prepare`` assumes, and gives the breast more of the network's pixels.
    """
    smooth = ndimage.median_filter(np.asarray(pixels, np.float32), size=5)
    labels, count = ndimage.label(smooth > 0.12)
    if count == 0:
        return 0, 0, pixels.shape[0], pixels.shape[1]
    sizes = ndimage.sum_labels(np.ones_like(smooth), labels, index=range(1, count + 1))
    rows, cols = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return (
        max(0, int(rows.min()) - margin),
        max(0, int(cols.min()) - margin),
        min(pixels.shape[0], int(rows.max()) + 1 + margin),
        min(pixels.shape[1], int(cols.max()) + 1 + margin),
    )


def _mias_rows(path: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows[row["refnum"].strip()].append(row)
    except (OSError, KeyError) as exc:
        raise DatasetError(f"cannot read mini-MIAS labels {path}: {exc}") from exc
    return rows


def import_mias(options: ImportOptions, collector: _Collector) -> None:
    """mini-MIAS: refnum mdbNNN (odd = right breast, next even = same woman's left), MLO view.

    Label per image = its worst row (malignant > benign > normal). Coordinates have their
    origin at the bottom-left corner: row = height - y. Rows without coordinates (e.g.
    calcifications spread over the breast) give an image-level label and no lesion.
    """
    labels = options.labels[0] if options.labels else options.source / "labels.csv"
    rows = _mias_rows(labels)
    files = {p.stem: p for p in options.source.iterdir() if p.suffix.lower() in (".png", ".pgm")}
    for stem in sorted(set(files) - set(rows)):
        collector.reject(str(files[stem]), qc.NO_LABEL, f"{stem} has no row in {labels.name}")
    for refnum in tqdm(sorted(rows), desc="mini-MIAS", unit="image"):
        match = _MIAS_ID.match(refnum)
        if refnum not in files or not match:
            collector.reject(refnum, qc.MISSING_FILE, f"no {refnum}.png/.pgm in {options.source}")
            continue
        try:
            pixels, _ = read_image_file(files[refnum])
        except InvalidInput as exc:
            collector.reject(str(files[refnum]), qc.UNREADABLE, str(exc))
            continue
        number = int(match.group(1))
        height = pixels.shape[0]
        box = breast_box(pixels) if options.crop_to_breast else None
        severities = {
            MIAS_SEVERITY[r["severity"].strip()] for r in rows[refnum] if r["severity"].strip()
        }
        label = "malignant" if "malignant" in severities else "benign" if severities else "normal"
        lesions = tuple(
            Lesion(
                column=float(r["x"]), row=float(height - float(r["y"])), radius=float(r["radius"])
            )
            for r in rows[refnum]
            if r["x"].strip() and r["y"].strip() and r["radius"].strip()
        )
        if box is not None:
            inside = all(box[0] <= x.row < box[2] and box[1] <= x.column < box[3] for x in lesions)
            if inside:
                pixels = pixels[box[0] : box[2], box[1] : box[3]]
                lesions = tuple(
                    Lesion(x.column - box[1], x.row - box[0], x.radius) for x in lesions
                )
            else:
                box = None
        classes = sorted({r["abnormality_class"].strip() for r in rows[refnum]} - {"NORM"})
        record = ImageRecord(
            image_id=refnum,
            patient_id=f"mdb{number - 1 + number % 2:03d}",
            laterality="R" if number % 2 else "L",
            view="MLO",
            label=label,
            abnormality="+".join(classes),
            density=MIAS_DENSITY.get(rows[refnum][0]["background_tissue"].strip(), ""),
            lesions=lesions if label != "normal" else (),
            source="mini-MIAS"
            + (f" crop rows {box[0]}:{box[2]} cols {box[1]}:{box[3]}" if box else ""),
        )
        collector.add(str(files[refnum]), pixels, 8, record)


# ---------------------------------------------------------------- DICOM and CBIS-DDSM


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


def _view(ds: Dataset) -> str:
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    if view:
        return view
    for item in ds.get("ViewCodeSequence", []) or []:
        meaning = str(item.get("CodeMeaning", "")).lower()
        if "cranio-caudal" in meaning:
            return "CC"
        if "medio-lateral oblique" in meaning:
            return "MLO"
    return ""


def _laterality(ds: Dataset) -> str:
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return ""


def import_dicom(
    options: ImportOptions, collector: _Collector, lookup: LabelLookup | None = None
) -> None:
    """DICOM files under the source folder (any depth), de-identified on the way in."""
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
        laterality = truth.laterality or _laterality(ds)
        view = truth.view or _view(ds)
        if truth.patient_id:
            ds.PatientID = truth.patient_id
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
        if collector.add(str(path), pixels, 16, record) and options.keep_dicom:
            ds.save_as(options.out / "dicom" / f"{image_id}.dcm", enforce_file_format=True)
    if options.reid_key is not None:
        pseudonyms.write_key(options.reid_key)


def _sop_labels(paths: Sequence[Path]) -> LabelLookup:
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


_CBIS_PATHOLOGY = {
    "MALIGNANT": "malignant",
    "BENIGN": "benign",
    "BENIGN_WITHOUT_CALLBACK": "benign",
}
_ACR = {"1": "a", "2": "b", "3": "c", "4": "d"}


def _cbis_labels(paths: Sequence[Path]) -> LabelLookup:
    """CBIS-DDSM case-description CSVs: one row per abnormality; key = first folder of
    'image file path' (e.g. Mass-Training_P_00001_LEFT_CC), which TCIA also stores as PatientID.
    """
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    for path in paths:
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                row = {
                    k.strip().lower().replace(" ", "_"): (v or "").strip() for k, v in row.items()
                }
                key = row.get("image_file_path", "").split("/")[0]
                if not key:
                    raise DatasetError(f"{path}: no 'image file path' column (CBIS-DDSM CSV?)")
                rows[key].append(row)

    def lookup(path: Path, ds: Dataset) -> DicomLabel | None:
        candidates = [str(ds.get("PatientID", "")), *path.parts]
        key = next((c for c in candidates if c in rows), None)
        if key is None:
            return None
        found = rows[key]
        labels = {_CBIS_PATHOLOGY.get(r.get("pathology", "").upper(), "unknown") for r in found}
        label = (
            "malignant" if "malignant" in labels else "benign" if "benign" in labels else "unknown"
        )
        first = found[0]
        side = first.get("left_or_right_breast", "").upper()
        return DicomLabel(
            label=label,
            abnormality="+".join(sorted({r.get("abnormality_type", "") for r in found} - {""})),
            density_acr=_ACR.get(first.get("breast_density", first.get("breast density", "")), ""),
            patient_id=first.get("patient_id", ""),
            laterality={"LEFT": "L", "RIGHT": "R"}.get(side, ""),
            view=first.get("image_view", "").upper(),
        )

    return lookup


# ---------------------------------------------------------------- entry point


def run_import(options: ImportOptions) -> ImportResult:
    """Import, QC, split and write the dataset folder; returns what was accepted and refused."""
    if options.format not in FORMATS:
        raise DatasetError(f"unknown format {options.format!r}; known: {FORMATS}")
    if not options.source.is_dir():
        raise DatasetError(f"source {options.source} is not a folder")
    if (options.out / MANIFEST).exists() and not options.force:
        raise DatasetError(f"{options.out} already holds a dataset (use --force to replace)")
    if options.reid_key is not None and options.out.resolve() in options.reid_key.resolve().parents:
        raise DatasetError("keep the re-identification key outside the dataset folder")
    collector = _Collector(options.out)
    if options.format == "mias":
        import_mias(options, collector)
    elif options.format == "dicom":
        lookup = _sop_labels(options.labels) if options.labels else None
        import_dicom(options, collector, lookup)
    else:
        csvs = list(options.labels) or sorted(options.source.rglob("*case_description*.csv"))
        if not csvs:
            raise DatasetError("cbis-ddsm needs its case-description CSVs (--labels or in SRC)")
        import_dicom(options, collector, _cbis_labels(csvs))
    records = collector.result.records
    if options.val_fraction > 0:
        records = assign_splits(records, options.val_fraction, options.seed)
    else:
        records = [r.with_split("train") for r in records]
    collector.result.records = records
    write_manifest(options.out, records)
    write_rejected(options.out, collector.result.rejected)
    write_dataset_info(
        options.out,
        {
            "id": options.dataset_id,
            "format": options.format,
            "source": options.source.name,
            "imported": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "images": len(records),
            "rejected": len(collector.result.rejected),
            "split": {"val_fraction": options.val_fraction, "seed": options.seed, "by": "patient"},
            "deidentification": "PS3.15 Annex E Basic Profile"
            if options.format != "mias"
            else "none needed (mini-MIAS is anonymous)",
        },
    )
    return collector.result


def summarise_rejections(rejected: Iterable[Rejection]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in rejected:
        counts[item.reason] += 1
    return dict(sorted(counts.items()))
