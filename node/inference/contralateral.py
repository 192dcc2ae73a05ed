"""The exam-aware model: each breast compared with the woman's other breast, same view.

Why: on mini-MIAS every single-image method measured was at chance (AUC 0.43-0.58), while the
difference between a breast and the mirrored other breast carries the signal (0.70 in
patient-level CV). The recipe, kept exactly as measured:

1. ``prepare``: presentation pixels in [0, 1]; RIGHT breasts mirrored (chest wall left);
   ``breast.breast_mask`` and everything outside it set to 0; crop to the mask's box; resize
   (stretch) to ``input_size`` (768 x 512) bilinear with antialias.
2. frozen ImageNet EfficientNet-Lite0 (``backbones``); taps "mid" (stride 16), "late" (32).
3. image vector v = [masked mean, masked max of mid, masked max of late]; exam vector
   v(this) - v(other breast, same view). Without the other side: v(this) through a separate
   single-image head, flagged (``ImagePrediction.compared = False``); that head is at chance.
4. head (plain arrays): standardise -> PCA 32 -> L2 logistic regression -> Platt scaling.
5. heatmap: the head's class-activation map per feature-grid cell, mapped back to the source
   pixels (un-crop, un-flip), zero outside the breast; findings: its peaks inside the breast.
   With a lesion head (``lesion.py``, trained on lesion outlines) the heatmap and findings
   come from its cell map instead, and the difference of the two breasts' lesion maxima joins
   the exam score.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage

from node.domain import ExamImage, Finding, ImagePrediction, ModelSpec
from node.inference.backbones import EfficientNetLite0, load_backbone
from node.inference.breast import breast_mask
from node.inference.device import serving_device
from node.inference.lesion import LesionHead

FloatArray = npt.NDArray[np.float64]
TAPS = ("mid", "late")
MAX_FINDINGS = 3
_MIN_SEPARATION = 0.1  # of the breast's height, between two findings


@dataclass(frozen=True)
class Prepared:
    """One image in the canonical frame, and how to map back to its source pixels."""

    x: torch.Tensor  # 1 x 1 x H x W network input, 0 outside the breast
    mask: npt.NDArray[np.bool_]  # H x W breast mask in the canonical frame
    flipped: bool  # RIGHT breast, mirrored
    box: tuple[int, int, int, int]  # r0, r1, c0, c1 of the breast box in the (mirrored) source
    source_shape: tuple[int, int]
    source_mask: npt.NDArray[np.bool_]  # the breast mask on the source pixels, as they lie


@dataclass(frozen=True)
class Features:
    """Feature maps of one prepared image and its breast mask on each tap's grid."""

    maps: Mapping[str, npt.NDArray[np.float32]]  # tap -> C x h x w
    grids: Mapping[str, npt.NDArray[np.bool_]]  # tap -> h x w


@dataclass(frozen=True)
class Head:
    """standardise -> PCA -> logistic regression -> Platt, as plain arrays.

    ``threshold`` is the operating point on the calibrated probability (from out-of-fold
    predictions of the training data, for the target sensitivity)."""

    mu: FloatArray
    sd: FloatArray
    components: FloatArray  # k x d
    coef: FloatArray  # k
    intercept: float
    platt: tuple[float, float] = (1.0, 0.0)  # p = sigmoid(a * logit + b)
    threshold: float = 0.5

    def linear(self) -> tuple[FloatArray, float]:
        """(w, b) on the raw vector: logit = x @ w + b."""
        w = (self.components.T @ self.coef) / self.sd
        return w, float(self.intercept - self.mu @ w)

    def logit(self, x: npt.NDArray[np.floating]) -> FloatArray:
        w, b = self.linear()
        return np.atleast_2d(np.asarray(x, np.float64)) @ w + b

    def calibrated(self, logit: npt.NDArray[np.floating] | float) -> FloatArray:
        a, b = self.platt
        return sigmoid(a * np.asarray(logit, np.float64) + b)

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        values = {
            "mu": self.mu,
            "sd": self.sd,
            "components": self.components,
            "coef": self.coef,
            "intercept": np.array([self.intercept]),
            "platt": np.array(self.platt),
            "threshold": np.array([self.threshold]),
        }
        return {
            f"{prefix}.{k}": torch.from_numpy(np.asarray(v, np.float64)) for k, v in values.items()
        }

    @classmethod
    def from_tensors(cls, state: Mapping[str, torch.Tensor], prefix: str) -> Head:
        """Read a head; KeyError/ValueError when the tensors do not make one."""

        def get(name: str) -> FloatArray:
            return state[f"{prefix}.{name}"].double().numpy()

        head = cls(
            get("mu"),
            get("sd"),
            get("components"),
            get("coef"),
            float(get("intercept")[0]),
            (float(get("platt")[0]), float(get("platt")[1])),
            float(get("threshold")[0]),
        )
        d = head.mu.shape[0]
        if head.sd.shape != (d,) or head.components.shape[1:] != (d,):
            raise ValueError(f"{prefix}: mu, sd and components disagree on the vector size")
        if head.coef.shape != (head.components.shape[0],):
            raise ValueError(f"{prefix}: coef does not match the components")
        return head


def sigmoid(z: npt.NDArray[np.floating] | float) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64))))


def prepare(
    pixels: npt.NDArray[np.floating] | npt.NDArray[np.integer],
    laterality: str,
    size: tuple[int, int],
) -> Prepared:
    """Canonical network input: mirrored when RIGHT, breast only, breast box stretched to size."""
    image = np.asarray(pixels, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("image has NaN or infinite values")
    flipped = laterality.upper().startswith("R")
    if flipped:
        image = image[:, ::-1]
    mask = breast_mask(image)
    rows, cols = np.where(mask.any(1))[0], np.where(mask.any(0))[0]
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = np.ascontiguousarray((image * mask)[r0:r1, c0:c1])
    x = F.interpolate(
        torch.from_numpy(crop)[None, None],
        size=size,
        mode="bilinear",
        antialias=True,
        align_corners=False,
    ).clamp_(0, 1)
    m = torch.from_numpy(np.ascontiguousarray(mask[r0:r1, c0:c1]).astype(np.float32))[None, None]
    small = F.interpolate(m, size=size, mode="bilinear", antialias=True, align_corners=False)
    shape = (int(image.shape[0]), int(image.shape[1]))
    source = np.ascontiguousarray(mask[:, ::-1]) if flipped else mask
    return Prepared(x, small[0, 0].numpy() > 0.5, flipped, (r0, r1, c0, c1), shape, source)


def grid_mask(mask: npt.NDArray[np.bool_], shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """The breast on a feature grid (cells at least half breast); never empty."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    cover = F.adaptive_avg_pool2d(t, shape)[0, 0].numpy()
    out = cover >= 0.5
    return out if out.any() else cover >= cover.max()


def features(backbone: EfficientNetLite0, prepared: Prepared) -> Features:
    """The backbone's taps for one image (one forward pass)."""
    return batch_features(backbone, [prepared])[0]


def exam_features(backbone: EfficientNetLite0, prepared: Sequence[Prepared]) -> list[Features]:
    """Each view's features, as fast as the backbone's device allows: on a GPU the exam's views
    in one pass (one launch sequence instead of one per view); on the CPU one view per pass,
    since four at once measured 1.2-2x slower on 1-2 threads (the activations outgrow the
    caches) and took 280 MB more (bench/inference_device.py)."""
    if backbone.grey_bias.device.type == "cuda":
        return batch_features(backbone, prepared)
    return [features(backbone, image) for image in prepared]


@torch.no_grad()
def batch_features(backbone: EfficientNetLite0, prepared: Sequence[Prepared]) -> list[Features]:
    """The taps of several images from one forward pass on the backbone's device."""
    device = backbone.grey_bias.device
    x = torch.cat([p.x for p in prepared]).to(device)
    taps = {k: v.float().cpu().numpy() for k, v in backbone(x, TAPS).items()}
    found = []
    for index, image in enumerate(prepared):
        maps = {k: v[index] for k, v in taps.items()}
        grids = {k: grid_mask(image.mask, (v.shape[1], v.shape[2])) for k, v in maps.items()}
        found.append(Features(maps, grids))
    return found


def image_vector(f: Features) -> npt.NDArray[np.float32]:
    """v(image): [mean, max of "mid" over the breast, max of "late" over the breast]."""
    mid = f.maps["mid"][:, f.grids["mid"]]
    late = f.maps["late"][:, f.grids["late"]]
    return np.concatenate([mid.mean(1), mid.max(1), late.max(1)]).astype(np.float32)


def heatmap_grid(head: Head, this: Features, other: Features | None) -> FloatArray:
    """The head's logit per "mid" grid cell: the exam vector the image would have if its whole
    breast looked like that cell (the late tap's share upsampled); -inf outside the breast."""
    mid, late = this.maps["mid"], this.maps["late"]
    c_mid = mid.shape[0]
    w, b = head.linear()
    w_mean, w_max, w_late = w[:c_mid], w[c_mid : 2 * c_mid], w[2 * c_mid :]
    if other is None:
        ref = np.zeros(w.shape[0])
    else:
        ref = image_vector(other).astype(np.float64)
    ref_mean, ref_max, ref_late = ref[:c_mid], ref[c_mid : 2 * c_mid], ref[2 * c_mid :]
    cam_mid = np.tensordot(w_mean + w_max, mid, axes=(0, 0)) - (w_mean @ ref_mean + w_max @ ref_max)
    cam_late = np.tensordot(w_late, late, axes=(0, 0)) - w_late @ ref_late
    up = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(cam_late, np.float32))[None, None],
        size=cam_mid.shape,
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    grid = cam_mid + up + b
    return np.where(this.grids["mid"], grid, -np.inf)


def to_source(grid: npt.NDArray[np.floating], prepared: Prepared) -> npt.NDArray[np.float32]:
    """A canonical-frame map back on the source pixels (NaN outside the breast box)."""
    r0, r1, c0, c1 = prepared.box
    g = np.where(np.isfinite(grid), grid, np.nan).astype(np.float32)
    fill = float(np.nanmin(g)) if np.isfinite(g).any() else 0.0
    t = torch.from_numpy(np.nan_to_num(g, nan=fill))[None, None]
    up = F.interpolate(t, size=(r1 - r0, c1 - c0), mode="bilinear", align_corners=False)
    out = np.full(prepared.source_shape, np.nan, np.float32)
    out[r0:r1, c0:c1] = up[0, 0].numpy()
    return np.ascontiguousarray(out[:, ::-1]) if prepared.flipped else out


def _region_area(
    h: npt.NDArray[np.floating], r: int, c: int, threshold: float, largest: float
) -> float:
    """Pixels of the region above ``threshold`` that holds (r, c), 4-connected as
    ``ndimage.label`` counts them; 1 when (r, c) is not above it.

    Exact where it is used, at a fraction of the cost on full-size images: the region is
    labelled in a window around the peak first, and the whole map only when the region
    reaches an inner edge of the window while still under the equivalent radius ``largest``
    (a region that reaches it gets the radius ``largest`` whatever its true size)."""
    if not h[r, c] > threshold:
        return 1.0
    half = math.ceil(1.5 * largest) + 1
    r0, r1 = max(0, r - half), min(h.shape[0], r + half + 1)
    c0, c1 = max(0, c - half), min(h.shape[1], c + half + 1)
    region, _ = ndimage.label(h[r0:r1, c0:c1] > threshold)
    own = region == region[r - r0, c - c0]
    area = float(np.count_nonzero(own))
    leaves = (
        (r0 > 0 and own[0].any())
        or (r1 < h.shape[0] and own[-1].any())
        or (c0 > 0 and own[:, 0].any())
        or (c1 < h.shape[1] and own[:, -1].any())
    )
    if not leaves or math.sqrt(area / math.pi) >= largest:
        return area
    region, _ = ndimage.label(h > threshold)
    return float(np.count_nonzero(region == region[r, c]))


def peaks(
    heat: npt.NDArray[np.floating], mask: npt.NDArray[np.bool_], limit: int = MAX_FINDINGS
) -> list[tuple[int, int, float, float]]:
    """Peaks of a source-grid logit map inside the breast: (row, column, radius, logit).

    Radius: the equivalent circle of the region around the peak above the midpoint between
    the peak and the breast's median (at most a sixth of the breast's height).
    """
    h = np.where(mask & np.isfinite(heat), heat, -np.inf)
    if not np.isfinite(h).any():
        return []
    median = float(np.median(h[np.isfinite(h)]))
    rows = np.where(mask.any(1))[0]
    span = float(rows[-1] - rows[0] + 1) if len(rows) else float(max(h.shape))
    work = h.copy()
    rr, cc = np.ogrid[: h.shape[0], : h.shape[1]]
    found: list[tuple[int, int, float, float]] = []
    for _ in range(limit):
        r, c = divmod(int(np.argmax(work)), h.shape[1])
        peak = float(work[r, c])
        if not np.isfinite(peak):
            break
        area = _region_area(h, r, c, 0.5 * (peak + median), span / 6)
        radius = min(math.sqrt(area / math.pi), span / 6)
        found.append((r, c, radius, peak))
        # The disc around the peak, tested in its bounding box only (full-size images).
        reach = max(radius, _MIN_SEPARATION * span)
        r0, r1 = max(0, math.floor(r - reach)), min(h.shape[0], math.floor(r + reach) + 1)
        c0, c1 = max(0, math.floor(c - reach)), min(h.shape[1], math.floor(c + reach) + 1)
        disc = (rr[r0:r1] - r) ** 2 + (cc[:, c0:c1] - c) ** 2 <= reach**2
        work[r0:r1, c0:c1][disc] = -np.inf
    return found


def pair_by_view(images: Sequence[ExamImage]) -> list[int | None]:
    """For each image, the index of the other breast's image of the same view, or None.

    Unknown laterality never pairs; several images of one breast and view pair with the
    first of the other side.
    """
    first: dict[tuple[str, str], int] = {}
    for index, image in enumerate(images):
        if image.laterality in ("L", "R"):
            first.setdefault((image.laterality, image.view.upper()), index)
    other = {"L": "R", "R": "L"}
    return [
        first.get((other[i.laterality], i.view.upper())) if i.laterality in other else None
        for i in images
    ]


class ContralateralModel:
    """A served exam-aware model: spec, backbone (shared, frozen), the paired head, the
    single-image fallback head and, from version 1.1.0 on, the lesion head. ``predict`` scores
    one image alone (the fallback); ``predict_exam`` pairs the breasts by view first."""

    def __init__(
        self,
        spec: ModelSpec,
        backbone_name: str,
        head: Head,
        fallback: Head,
        lesion: LesionHead | None = None,
        device: str | None = None,
    ) -> None:
        self.spec = spec
        self.backbone_name = backbone_name
        self.device = serving_device(device)
        self.backbone = load_backbone(backbone_name, device=str(self.device))
        self.head = head
        self.fallback = fallback
        self.lesion = lesion
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ContralateralModel({self.spec.ref}, {self.backbone_name} on {self.device})"

    def with_finding_threshold(self, threshold: float) -> ContralateralModel:
        """The same model reporting findings down to ``threshold`` (evaluation's FROC)."""
        return ContralateralModel(
            replace(self.spec, finding_threshold=threshold),
            self.backbone_name,
            self.head,
            self.fallback,
            self.lesion,
            str(self.device),
        )

    def predict(
        self, pixels: npt.NDArray[np.floating] | npt.NDArray[np.integer], laterality: str
    ) -> ImagePrediction:
        """One image alone: the single-image fallback head (flagged ``compared=False``)."""
        return self.predict_exam([ExamImage(pixels, laterality, "")])[0]

    def predict_exam(self, images: Sequence[ExamImage]) -> list[ImagePrediction]:
        """Every image of one exam, in order; each breast against the other breast, same view."""
        prepared = [prepare(i.pixels, i.laterality, self.spec.input_size) for i in images]
        with self._lock:
            done = list(zip(prepared, exam_features(self.backbone, prepared), strict=True))
        partners = pair_by_view(images)
        return [
            self._score(done[i], None if j is None else done[j][1]) for i, j in enumerate(partners)
        ]

    def _score(self, this: tuple[Prepared, Features], other: Features | None) -> ImagePrediction:
        prepared, feats = this
        head = self.head if other is not None else self.fallback
        vector = image_vector(feats)
        if other is not None:
            vector = vector - image_vector(other)
        logit = float(head.logit(vector)[0])
        if self.lesion is not None:
            return self._score_lesion(prepared, feats, other, logit)
        score = float(head.calibrated(logit))
        logits = to_source(heatmap_grid(head, feats, other), prepared)
        return self._result(prepared, logits, head.calibrated, score, other is not None)

    def _score_lesion(
        self, prepared: Prepared, feats: Features, other: Features | None, head_logit: float
    ) -> ImagePrediction:
        """Heatmap and findings from the lesion map, each cell shown as the exam probability
        the image would have if that cell were its lesion maximum (so no finding scores above
        the image; the top one equals it up to the upsampling's smoothing). Paired: the exam score adds beta x the difference of the two
        breasts' lesion maxima. Alone: the fallback head's score, the map only places it."""
        assert self.lesion is not None
        grid = self.lesion.grid(feats, other)
        if other is None:
            exam = self.lesion.exam_logit(head_logit, grid, float(np.max(grid)))
            score = float(self.fallback.calibrated(head_logit))
            logits = to_source(exam, prepared)
            return self._result(prepared, logits, self.fallback.calibrated, score, compared=False)
        other_max = float(np.max(self.lesion.grid(other, feats)))
        exam = self.lesion.exam_logit(head_logit, grid, other_max)
        score = float(self.lesion.calibrated(np.max(exam)))
        logits = to_source(exam, prepared)
        return self._result(prepared, logits, self.lesion.calibrated, score, compared=True)

    def _result(
        self,
        prepared: Prepared,
        logits: npt.NDArray[np.float32],
        calibrate: Callable[[FloatArray], FloatArray],
        score: float,
        compared: bool,
    ) -> ImagePrediction:
        mask = prepared.source_mask
        probability = np.where(mask, calibrate(np.nan_to_num(logits, nan=-50.0)), 0.0)
        findings = [
            Finding(column=float(c), row=float(r), radius=max(1.0, rad), score=p)
            for r, c, rad, logit in peaks(np.where(mask, logits, np.nan), mask)
            if (p := float(calibrate(np.array([logit]))[0])) >= self.spec.finding_threshold
        ]
        return ImagePrediction(
            score=score,
            heatmap=probability.astype(np.float32),
            findings=findings,
            compared=compared,
        )
