"""What every importer shares: the options, and the collector that accepts images.

The collector runs quality control on the pixels, refuses duplicates by pixel hash and writes
accepted images as PNG (presentation pixels, PS3.3 C.11, since that is what
``node.inference.runner.prepare`` sees when the node serves a model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from node.datasets import qc
from node.datasets.manifest import ImageRecord, Rejection, pixel_sha256


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


class Collector:
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
    quantised: npt.NDArray[Any] = values.astype(np.uint8 if bits == 8 else np.uint16)
    return quantised
