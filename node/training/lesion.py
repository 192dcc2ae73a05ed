"""Fitting the lesion head (``node.inference.lesion``) from lesion centres and radii.

Why: mini-MIAS gives each abnormal image a lesion centre and radius; the image-level head's
class-activation map ignores them and localises near chance. Cell labels from the circles:
1 = a cell whose centre lies inside a lesion circle (and the cell holding the centre, so a
lesion smaller than a cell still counts), 0 = a breast cell of a normal image or one further
than 2 radii from every lesion, ignored otherwise (the rim of a loose circle, and abnormal
images without coordinates: spread calcifications, unknown places). Each image weighs the same:
its positive cells share one unit, its (at most ``NEGATIVES``, drawn at random) negative cells
another; the two classes then weigh half each. L2 logistic regression, standardised cells.

Outlined lesions (CBIS-DDSM ROI masks, ``masks/`` of the dataset): the circle rule with the
outline in place of the circle. Positive: a breast cell whose centre lies inside the outline
(an elongated or irregular lesion reaches cells a circle of its equivalent radius would miss),
and the touched cell nearest the centroid, so a lesion smaller than a cell still counts.
Ignored: cells the outline touches without holding their centre, and a rim of one equivalent
radius around the touched cells. Measured by ``bench/lesion_outline_rule.py`` (mini-MIAS
train split, its circles drawn as outlines, the served CV, 5 folds x 3 seeds): circles AUC
0.741, top-1 within 1.5 radii 0.42, FROC at 1 false finding per image 0.49; outlines with this
rule 0.739, 0.43, 0.46; every touched cell positive 0.718, 0.42, 0.44 (a border cell is
mostly normal tissue), so not that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage, optimize
from tqdm import tqdm

from node.datasets.manifest import ImageRecord, Lesion, read_lesion_mask
from node.dicom.pixels import read_image_file
from node.inference.backbones import load_backbone
from node.inference.contralateral import Features, Prepared, features, grid_mask, prepare
from node.inference.lesion import cell_vectors, mean_cell

FloatArray = npt.NDArray[np.float64]
NEGATIVES = 200  # negative cells drawn per image
POSITIVE, NEGATIVE, IGNORED = 1, 0, -1
MAPS = "feature_maps.npz"


@dataclass(frozen=True)
class CellData:
    """Everything the lesion head trains and is measured on, per image."""

    feats: list[Features]
    prepared: list[Prepared]  # geometry and source mask (no network input kept)
    lesions: list[tuple[Lesion, ...]]
    masks: list[npt.NDArray[np.uint8] | None] = field(default_factory=list)  # per image

    def mask(self, k: int) -> npt.NDArray[np.uint8] | None:
        """Image ``k``'s lesion mask (k inside its k-th lesion), None where only circles."""
        return self.masks[k] if self.masks else None


def extract(
    dataset: Path,
    records: Sequence[ImageRecord],
    backbone_name: str,
    size: tuple[int, int],
    run_dir: Path,
) -> CellData:
    """The served feature maps of every record (cached in ``run_dir`` by pixel hash)."""
    cache = run_dir / MAPS
    key = hashlib.sha256(
        f"{backbone_name} {size} {' '.join(r.sha256 for r in records)}".encode()
    ).hexdigest()
    prepared: list[Prepared] = []
    maps: dict[str, list[npt.NDArray[np.float16]]] = {"mid": [], "late": []}
    saved = np.load(cache) if cache.exists() else None
    if saved is not None and str(saved["key"]) == key:
        for t in maps:
            maps[t] = list(saved[t])
    backbone = None if maps["mid"] else load_backbone(backbone_name)
    for record in tqdm(records, desc="feature maps", unit="image"):
        pixels, _ = read_image_file(dataset / record.path)
        prep = prepare(pixels, record.laterality, size)
        if backbone is not None:
            f = features(backbone, prep)
            for t in maps:
                maps[t].append(f.maps[t].astype(np.float16))
        prepared.append(replace(prep, x=torch.empty(0)))
    if backbone is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache, key=np.array(key), mid=np.stack(maps["mid"]), late=np.stack(maps["late"]))
    feats = []
    for k, prep in enumerate(prepared):
        m = {t: np.asarray(maps[t][k], np.float32) for t in maps}
        g = {t: grid_mask(prep.mask, (v.shape[1], v.shape[2])) for t, v in m.items()}
        feats.append(Features(m, g))
    masks = [read_lesion_mask(dataset, r) for r in records]
    return CellData(feats, prepared, [r.lesions for r in records], masks)


def cell_centres(prepared: Prepared, shape: tuple[int, int]) -> tuple[FloatArray, FloatArray]:
    """Source-pixel (row, column) of every cell centre of a grid over the canonical frame."""
    r0, r1, c0, c1 = prepared.box
    rows = r0 + (np.arange(shape[0]) + 0.5) * (r1 - r0) / shape[0]
    cols = c0 + (np.arange(shape[1]) + 0.5) * (c1 - c0) / shape[1]
    if prepared.flipped:
        cols = prepared.source_shape[1] - 1 - cols
    r, c = np.meshgrid(rows, cols, indexing="ij")
    return r, c


def cell_labels(
    prepared: Prepared,
    grid: npt.NDArray[np.bool_],
    lesions: Sequence[Lesion],
    abnormal: bool,
    mask: npt.NDArray[np.uint8] | None = None,
    overlap: bool = False,
) -> npt.NDArray[np.int_]:
    """POSITIVE / NEGATIVE / IGNORED per cell of ``grid`` (flattened), as the module says.
    ``mask``: the lesion mask on the source pixels (value k for the k-th lesion), if any;
    ``overlap``: every cell the outline touches is positive (measured worse, kept to compare)."""
    labels = np.where(grid, NEGATIVE, IGNORED).astype(int)
    if abnormal:
        if not lesions:
            return np.full(grid.size, IGNORED)
        rows, cols = cell_centres(prepared, grid.shape)
        near = np.zeros(grid.shape, bool)
        for number, lesion in enumerate(lesions, start=1):
            region = None if mask is None else np.asarray(mask == number, bool)
            cells = None if region is None else _overlapped(prepared, grid.shape, region)
            if region is not None and cells is not None and cells.any():
                d = np.hypot(rows - lesion.row, cols - lesion.column)
                chosen = cells.copy() if overlap else _centres_inside(region, rows, cols)
                chosen.flat[int(np.argmin(np.where(cells, d, np.inf)))] = True
                inside = chosen & grid
                labels[inside if inside.any() else chosen] = POSITIVE
                steps = int(np.ceil(lesion.radius / _cell_size(prepared, grid)))
                near |= ndimage.binary_dilation(cells, np.ones((3, 3), bool), iterations=steps)
                continue
            d = np.hypot(rows - lesion.row, cols - lesion.column)
            labels[(d <= lesion.radius) & grid] = POSITIVE
            labels.flat[int(np.argmin(d))] = POSITIVE
            near |= d <= 2 * lesion.radius
        labels[near & (labels == NEGATIVE)] = IGNORED
    return labels.ravel()


def _centres_inside(
    region: npt.NDArray[np.bool_], rows: FloatArray, cols: FloatArray
) -> npt.NDArray[np.bool_]:
    """Cells whose centre (source pixels) lies inside ``region``."""
    r = np.clip(np.rint(rows).astype(int), 0, region.shape[0] - 1)
    c = np.clip(np.rint(cols).astype(int), 0, region.shape[1] - 1)
    return np.asarray(region[r, c], bool)


def _cell_size(prepared: Prepared, grid: npt.NDArray[np.bool_]) -> float:
    """Mean side of a cell in source pixels."""
    r0, r1, c0, c1 = prepared.box
    return float(((r1 - r0) / grid.shape[0] + (c1 - c0) / grid.shape[1]) / 2)


def _overlapped(
    prepared: Prepared, shape: tuple[int, int], region: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Cells of a grid over the canonical frame that hold any pixel of ``region`` (source)."""
    if region.shape != prepared.source_shape:
        raise ValueError(
            f"lesion mask {region.shape} does not match its image {prepared.source_shape}"
        )
    r0, r1, c0, c1 = prepared.box
    rows, cols = np.nonzero(region)
    if prepared.flipped:
        cols = prepared.source_shape[1] - 1 - cols
    cell_rows = np.floor((rows - r0) * shape[0] / (r1 - r0)).astype(int)
    cell_cols = np.floor((cols - c0) * shape[1] / (c1 - c0)).astype(int)
    keep = (cell_rows >= 0) & (cell_rows < shape[0]) & (cell_cols >= 0) & (cell_cols < shape[1])
    cells = np.zeros(shape, bool)
    cells[cell_rows[keep], cell_cols[keep]] = True
    return cells


def reference(data: CellData, partner: npt.NDArray[np.int_], k: int) -> npt.NDArray[np.float32]:
    """The mean cell the lesion head subtracts: the other breast's, else this breast's own."""
    return mean_cell(data.feats[partner[k] if partner[k] >= 0 else k])


def fit_cells(
    data: CellData,
    labels: Sequence[npt.NDArray[np.int_]],
    partner: npt.NDArray[np.int_],
    rows: Sequence[int] | npt.NDArray[np.int_],
    lam: float,
    seed: int,
) -> tuple[FloatArray, float]:
    """(weight, bias) on raw cell vectors from the images ``rows``."""
    rng = np.random.default_rng(seed)
    xs, ys, ws = [], [], []
    for k in rows:
        cells = cell_vectors(data.feats[k]) - reference(data, partner, k)
        pos = np.where(labels[k] == POSITIVE)[0]
        neg = np.where(labels[k] == NEGATIVE)[0]
        if len(neg) > NEGATIVES:
            neg = rng.choice(neg, NEGATIVES, replace=False)
        for chosen, value in ((pos, 1.0), (neg, 0.0)):
            if len(chosen):
                xs.append(cells[chosen])
                ys.append(np.full(len(chosen), value))
                ws.append(np.full(len(chosen), 1.0 / len(chosen)))
    if not xs:
        raise ValueError("no labelled cells to fit the lesion head on")
    x = np.concatenate(xs).astype(np.float64)
    y = np.concatenate(ys)
    w = np.concatenate(ws)
    if not (y > 0).any() or (y > 0).all():
        raise ValueError("the lesion head needs both lesion and lesion-free cells")
    w[y > 0] /= 2 * w[y > 0].sum()
    w[y == 0] /= 2 * w[y == 0].sum()
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    s = 2 * y - 1
    d = z.shape[1]

    def loss_grad(p: FloatArray) -> tuple[float, FloatArray]:
        margin = s * (z @ p[:d] + p[d])
        loss = float(w @ np.logaddexp(0, -margin)) + 0.5 * lam * float(p[:d] @ p[:d])
        g = -s * w / (1 + np.exp(np.clip(margin, -50, 50)))
        return loss, np.concatenate([z.T @ g + lam * p[:d], [g.sum()]])

    result = optimize.minimize(
        loss_grad, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500}
    )
    weight = result.x[:d] / sd
    return weight, float(result.x[d] - mu @ weight)
