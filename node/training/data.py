"""Training samples: dataset images through the node's own ``prepare``, plus lesion targets.

Served = trained: every image goes through ``node.inference.runner.prepare`` (orientation by
laterality, keep-aspect resize, median-tissue intensity) exactly as the node does when it
serves the model, so the network never sees a distribution it is not served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from node.datasets.manifest import ImageRecord, Lesion
from node.dicom.pixels import read_image_file
from node.errors import InvalidInput, TrainingError
from node.inference.runner import Geometry, prepare

FloatImage = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Sample:
    """One prepared image with its heatmap target; ``located`` says whether the heatmap is
    supervised (normal images: empty target; abnormal images: only when lesions are located)."""

    image_id: str
    image: FloatImage  # (rows, cols) network input
    heat: FloatImage  # (rows, cols) soft lesion discs, 0.5 at each lesion's radius
    label: int  # 1 = positive class
    located: bool


def lesion_target(
    lesions: Sequence[Lesion], geometry: Geometry, size: tuple[int, int]
) -> FloatImage:
    """Soft discs on the network grid: lesion centres and radii mapped like ``prepare`` maps pixels."""
    rr = np.arange(size[0], dtype=np.float32)[:, None]
    cc = np.arange(size[1], dtype=np.float32)[None, :]
    target = np.zeros(size, np.float32)
    columns = geometry.source_shape[1]
    for lesion in lesions:
        col = columns - 1 - lesion.column if geometry.flipped else lesion.column
        r = max(lesion.radius * geometry.scale, 1.0)
        d = np.hypot(
            rr - ((lesion.row + 0.5) * geometry.scale - 0.5),
            cc - ((col + 0.5) * geometry.scale - 0.5),
        )
        z = np.minimum((d - r) / (0.15 * r + 0.5), 50.0)
        target = np.maximum(target, 1.0 / (1.0 + np.exp(z)))
    return target.astype(np.float32)


def load_samples(
    dataset: Path,
    records: Sequence[ImageRecord],
    input_size: tuple[int, int],
    positive_labels: Sequence[str],
    desc: str = "preparing",
) -> list[Sample]:
    """Read and prepare every record (once: the expensive part is decoding and resizing)."""
    samples = []
    for record in tqdm(records, desc=desc, unit="image", leave=False):
        try:
            pixels, _ = read_image_file(dataset / record.path)
        except InvalidInput as exc:
            raise TrainingError(f"{record.image_id}: {exc}") from exc
        image, geometry = prepare(pixels, record.laterality, input_size)
        positive = record.label in positive_labels
        lesions = record.lesions if positive else ()
        samples.append(
            Sample(
                image_id=record.image_id,
                image=image,
                heat=lesion_target(lesions, geometry, input_size),
                label=int(positive),
                located=not record.is_abnormal or not positive or bool(record.lesions),
            )
        )
    return samples
