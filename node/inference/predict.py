"""Batch prediction over image files, for ``mammo-node predict`` and offline evaluation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pydicom

from node.dicom.pixels import read_image_file
from node.dicom.views import normalise_dataset
from node.errors import InvalidInput
from node.inference.runner import LoadedModel


def _laterality(ds: pydicom.Dataset | None) -> str:
    """The breast by the service's rules (``node.dicom.views``); "" for plain image files."""
    return "" if ds is None else normalise_dataset(ds).laterality


def predict_paths(paths: Iterable[Path], model: LoadedModel) -> Iterator[dict[str, Any]]:
    """Yield one result row per file, in pixel coordinates of that file's image.

    A file that cannot be read or used yields ``{"path", "error"}`` and the run goes on.
    """
    for path in paths:
        try:
            pixels, ds = read_image_file(path)
            prediction = model.predict(pixels, _laterality(ds))
        except (InvalidInput, ValueError) as exc:
            yield {"path": str(path), "error": str(exc)}
            continue
        yield {
            "path": str(path),
            "score": prediction.score,
            "findings": [
                {"x": f.column, "y": f.row, "radius": f.radius, "score": f.score}
                for f in prediction.findings
            ],
        }
