"""Run one loaded model on one image: pre-processing, the network, post-processing into findings.

Pre-processing (shared with training, so both see the same thing):
1. orientation: every breast is turned to the left-breast layout, chest wall on the LEFT edge
   (ImageLaterality R is mirrored; unknown laterality is decided by which edge is brighter,
   since the breast touches the chest-wall edge and air lies on the other side);
2. size: scaled to fit the model's ``input_size`` keeping the aspect ratio (no anisotropic
   stretch of lesion shapes), padded with background at the bottom/right;
3. intensity: divided by the median of the breast tissue (pixels > 0.05) and scaled to 0.5, so
   a different window/level does not move the model off its training distribution.
The heatmap is mapped back by the inverse of 2 and 1, so it lies on the source pixels.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from node.domain import ExamImage, Finding, ImagePrediction, ModelSpec
from node.inference.breast import inside, source_breast_mask
from node.inference.device import serving_device

FloatImage = npt.NDArray[np.float32]
_TISSUE = 0.05
_MAX_FINDINGS = 10


@dataclass(frozen=True)
class Geometry:
    """How a source image was mapped onto the network input, to map results back."""

    source_shape: tuple[int, int]
    flipped: bool
    scale: float  # network pixels per source pixel
    valid_shape: tuple[int, int]  # the part of the network input covered by the image


def chest_wall_on_right(pixels: FloatImage) -> bool:
    """Guess the chest-wall side: the breast touches that edge, air is at the other."""
    strip = max(1, pixels.shape[1] // 20)
    return float(pixels[:, -strip:].mean()) > float(pixels[:, :strip].mean())


def prepare(
    pixels: npt.NDArray[np.floating] | npt.NDArray[np.integer],
    laterality: str,
    input_size: tuple[int, int],
) -> tuple[FloatImage, Geometry]:
    """Return the network input (``input_size``, float32) and the geometry used."""
    image = np.asarray(pixels, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("image has NaN or infinite values")
    if laterality == "R":
        flipped = True
    elif laterality == "L":
        flipped = False
    else:
        flipped = chest_wall_on_right(image)
    if flipped:
        image = image[:, ::-1]
    rows, cols = image.shape
    scale = min(input_size[0] / rows, input_size[1] / cols)
    valid = (min(input_size[0], round(rows * scale)), min(input_size[1], round(cols * scale)))
    tensor = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    small = F.interpolate(tensor, size=valid, mode="bilinear", antialias=True, align_corners=False)
    out = np.zeros(input_size, dtype=np.float32)
    out[: valid[0], : valid[1]] = small[0, 0].numpy()
    tissue = out[out > _TISSUE]
    reference = float(np.median(tissue)) if tissue.size >= 16 else 1.0
    out = np.clip(out * (0.5 / max(reference, 1e-3)), 0.0, 3.0)
    return out, Geometry((rows, cols), flipped, scale, valid)


def restore(heatmap: FloatImage, geometry: Geometry) -> FloatImage:
    """Map a network-size heatmap back onto the source image's pixels."""
    valid = heatmap[: geometry.valid_shape[0], : geometry.valid_shape[1]]
    tensor = torch.from_numpy(np.ascontiguousarray(valid))[None, None]
    big = F.interpolate(tensor, size=geometry.source_shape, mode="bilinear", align_corners=False)
    out = big[0, 0].numpy().clip(0.0, 1.0).astype(np.float32)
    return np.ascontiguousarray(out[:, ::-1]) if geometry.flipped else out


def find_lesions(heatmap: FloatImage, threshold: float) -> list[tuple[float, float, float, float]]:
    """Connected regions of ``heatmap`` >= threshold as (row, column, radius, peak), best first.

    Centre: heatmap-weighted centroid of the region's half-peak core; radius: that core's area
    as a disc (the training target is a disc of the lesion's radius).
    """
    labels, count = ndimage.label(heatmap >= threshold)
    found: list[tuple[float, float, float, float]] = []
    for index in range(1, count + 1):
        region = labels == index
        peak = float(heatmap[region].max())
        core = region & (heatmap >= 0.5 * peak)
        weights = np.where(core, heatmap, 0.0)
        row, col = ndimage.center_of_mass(weights)
        radius = max(1.0, float(np.sqrt(core.sum() / np.pi)))
        found.append((float(row), float(col), radius, peak))
    found.sort(key=lambda f: -f[3])
    return found[:_MAX_FINDINGS]


class LoadedModel:
    """A model version ready to predict: its spec and its network in eval mode.

    Thread safety: ``predict`` holds a lock, so concurrent callers are served one at a time
    (the network is small; a worker runs one image at a time anyway).
    """

    def __init__(self, spec: ModelSpec, network: nn.Module, device: str | None = None) -> None:
        self.spec = spec
        self.device = serving_device(device)
        self.network = network.to(self.device).eval()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LoadedModel({self.spec.ref} on {self.device})"

    def with_finding_threshold(self, threshold: float) -> LoadedModel:
        """The same network reporting findings down to ``threshold`` (evaluation's FROC)."""
        return LoadedModel(
            replace(self.spec, finding_threshold=threshold), self.network, str(self.device)
        )

    def predict_exam(self, images: Sequence[ExamImage]) -> list[ImagePrediction]:
        """Every image of an exam, each scored alone (this model does not compare breasts)."""
        return [self.predict(image.pixels, image.laterality) for image in images]

    def predict(
        self, pixels: npt.NDArray[np.floating] | npt.NDArray[np.integer], laterality: str
    ) -> ImagePrediction:
        """Score one image given as presentation pixels in [0, 1] (see ``presentation_pixels``).

        ``laterality`` is ImageLaterality ("L", "R", or "" when unknown).
        """
        prepared, geometry = prepare(pixels, laterality, self.spec.input_size)
        with self._lock, torch.inference_mode():
            batch = torch.from_numpy(prepared)[None, None].to(self.device)
            heat_logits, image_logit = self.network(batch)
            small = torch.sigmoid(heat_logits)[0, 0].float().cpu().numpy()
            score = float(torch.sigmoid(image_logit)[0].cpu())
        findings = []
        rows, cols = geometry.source_shape
        breast = source_breast_mask(np.asarray(pixels, dtype=np.float32), geometry.flipped)
        for row, col, radius, peak in find_lesions(small, self.spec.finding_threshold):
            source_col = (col + 0.5) / geometry.scale - 0.5
            if geometry.flipped:
                source_col = cols - 1 - source_col
            finding = Finding(
                column=float(np.clip(source_col, 0, cols - 1)),
                row=float(np.clip((row + 0.5) / geometry.scale - 0.5, 0, rows - 1)),
                radius=radius / geometry.scale,
                score=peak,
            )
            if inside(breast, finding.row, finding.column):  # never on a film label or marker
                findings.append(finding)
        return ImagePrediction(score=score, heatmap=restore(small, geometry), findings=findings)
