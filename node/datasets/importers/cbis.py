"""CBIS-DDSM: its DICOM files (TCIA layout) plus the case-description CSVs that label them.

The images go through the DICOM importer; this module only turns the CSVs into a lookup.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset

from node.datasets.importers.dicom import DicomLabel, LabelLookup
from node.errors import DatasetError

_CBIS_PATHOLOGY = {
    "MALIGNANT": "malignant",
    "BENIGN": "benign",
    "BENIGN_WITHOUT_CALLBACK": "benign",
}
_ACR = {"1": "a", "2": "b", "3": "c", "4": "d"}


def cbis_labels(paths: Sequence[Path]) -> LabelLookup:
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
