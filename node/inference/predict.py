"""Batch prediction over image files, for ``mammo-node predict`` and offline evaluation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from node.dicom.pixels import read_image_file
from node.errors import InvalidInput
from node.inference.runner import LoadedModel


def _laterality(ds: Any) -> str:
    """ImageLaterality (0020,0062), else Laterality (0020,0060), else "" (unknown)."""
    if ds is None:
        return ""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(getattr(ds, keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return ""


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
