"""mini-MIAS: a folder of images (.png/.pgm) and its labels CSV.

refnum mdbNNN: odd = right breast, the next even number = the same woman's left; every image
is an MLO view. Coordinates count rows from the bottom-left corner; the manifest counts from
the top (``node.datasets.manifest``).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from tqdm import tqdm

from node.datasets import qc
from node.datasets.importers.collector import Collector, ImportOptions
from node.datasets.manifest import ImageRecord, Lesion
from node.dicom.pixels import read_image_file
from node.errors import DatasetError, InvalidInput

MIAS_DENSITY = {"F": "fatty", "G": "glandular", "D": "dense"}
MIAS_SEVERITY = {"B": "benign", "M": "malignant"}
_MIAS_ID = re.compile(r"^mdb(\d{3})$")


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


def import_mias(options: ImportOptions, collector: Collector) -> None:
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
