"""The breast mask: where a finding may lie, for every model.

Film labels, markers and scanner text are bright too, so a model's heatmap can peak on them
(a CBIS-DDSM exam once had its top finding on the film label). The mask keeps the breast only:
threshold, an opening that cuts labels and markers off the breast, the largest component
touching the chest-wall side, holes filled.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage

BoolImage = npt.NDArray[np.bool_]
_WORK_SIZE = 512  # the mask is computed at <= this many pixels a side, returned full size


def breast_mask(image: npt.NDArray[np.floating]) -> BoolImage:
    """Breast mask of a chest-wall-LEFT image in [0, 1], same shape.

    Threshold at 10 % of the 99th percentile (at least 0.03) of a smoothed copy, open with a
    disc, keep the largest component touching the left fifth (else the largest), fill holes,
    close. An image with nothing above the threshold is all breast (nothing is ruled out).
    """
    rows, cols = image.shape
    f = max(1, math.ceil(max(rows, cols) / _WORK_SIZE))
    img = np.asarray(image, dtype=np.float32)
    if f > 1:
        small = img[: rows - rows % f, : cols - cols % f]
        small = small.reshape(rows // f, f, cols // f, f).mean((1, 3))
    else:
        small = img
    smooth = ndimage.uniform_filter(small, 5)
    threshold = max(0.03, 0.10 * float(np.percentile(smooth, 99)))
    radius = max(2, round(min(smooth.shape) / 100))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = (yy**2 + xx**2) <= radius**2
    opened = ndimage.binary_opening(smooth > threshold, disc)
    labels, count = ndimage.label(opened)
    if count == 0:
        return np.ones((rows, cols), dtype=bool)
    sizes = ndimage.sum(opened, labels, index=np.arange(1, count + 1))
    edge = set(np.unique(labels[:, : max(1, smooth.shape[1] // 5)]).tolist()) - {0}
    candidates = [i for i in range(1, count + 1) if i in edge] or list(range(1, count + 1))
    keep = max(candidates, key=lambda i: sizes[i - 1])
    mask = ndimage.binary_fill_holes(labels == keep)
    mask = ndimage.binary_closing(mask, disc, iterations=2) | mask
    if f > 1:
        mask = np.repeat(np.repeat(mask, f, 0), f, 1)
        mask = np.pad(mask, ((0, rows - mask.shape[0]), (0, cols - mask.shape[1])), mode="edge")
    return np.asarray(mask, dtype=bool)


def source_breast_mask(image: npt.NDArray[np.floating], flipped: bool) -> BoolImage:
    """The breast mask of a source image whose chest wall is on the right when ``flipped``."""
    if not flipped:
        return breast_mask(image)
    return np.ascontiguousarray(breast_mask(np.ascontiguousarray(image[:, ::-1]))[:, ::-1])


def inside(mask: BoolImage, row: float, column: float) -> bool:
    """Whether the pixel nearest to (row, column) is breast."""
    r = int(np.clip(round(row), 0, mask.shape[0] - 1))
    c = int(np.clip(round(column), 0, mask.shape[1] - 1))
    return bool(mask[r, c])
