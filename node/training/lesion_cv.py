"""Patient-level CV of the lesion head inside the train split, and the served lesion head.

Measured on the same folds, side by side: the exam head alone (the 1.0.0 recipe), the lesion
head's max difference (this breast's lesion maximum - the other breast's) alone, and their sum
``exam logit + beta x max difference``; localisation of the lesion map's peaks against the
class-activation map's (top-1 peak within 1.5 radii, or inside the lesion's outline where
the dataset has one; FROC lesion sensitivity at 0.5 / 1 / 2 false findings per image). ``beta`` only matches scales (standard deviation of the exam head's
out-of-fold logits over that of the max differences): it uses no labels, so it cannot fit the
folds. Only paired breasts count (the lesion head's exam score needs the other breast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from node.datasets.manifest import ImageRecord, Lesion, lesion_at
from node.inference.contralateral import heatmap_grid, peaks, sigmoid, to_source
from node.inference.lesion import LesionHead
from node.models.registry import LESION_CELLS
from node.stats.intervals import patient_bootstrap_auc
from node.stats.roc import auc
from node.training.head import fit_linear, group_folds, operating_point, platt, reliability
from node.training.lesion import CellData, cell_labels, fit_cells

FloatArray = npt.NDArray[np.float64]
CLASSES = {  # abnormality classes reported apart (mini-MIAS codes and the importer's words)
    "mass": ("CIRC", "SPIC", "MISC", "MASS"),
    "calcification": ("CALC", "CALCIFICATION"),
    "distortion_or_asymmetry": ("ARCH", "ASYM"),
}
HIT_FACTOR = 1.5


@dataclass(frozen=True)
class ScoredFinding:
    column: float
    row: float
    score: float
    lesion: int = 0  # the lesion mask's value under the finding (k = k-th lesion), 0 = none


def _hit(f: ScoredFinding, truth: Sequence[Lesion], factor: float) -> int:
    """The lesion a finding hits: the outline it lies in, else within ``factor`` radii; -1."""
    if 0 < f.lesion <= len(truth):
        return f.lesion - 1
    return next(
        (
            k
            for k, les in enumerate(truth)
            if np.hypot(f.column - les.column, f.row - les.row) <= factor * les.radius
        ),
        -1,
    )


def froc_sensitivity(
    found: Sequence[Sequence[ScoredFinding]],
    lesions: Sequence[Sequence[Lesion]],
    factor: float,
    fp_rate: float,
) -> float:
    """Best lesion sensitivity with at most ``fp_rate`` false findings per image: the rule of
    ``mammo-node evaluate``'s FROC (``node.evaluation.froc``, a layer this one cannot import):
    a finding hits a lesion inside its outline or within ``factor`` radii, each lesion once."""
    events = []
    for image, (fs, truth) in enumerate(zip(found, lesions, strict=True)):
        for f in fs:
            events.append((f.score, image, _hit(f, truth, factor)))
    total = sum(len(t) for t in lesions)
    events.sort(key=lambda e: -e[0])
    hits: set[tuple[int, int]] = set()
    false, best = 0, 0.0
    for i, (score, image, hit) in enumerate(events):
        if hit >= 0:
            hits.add((image, hit))
        else:
            false += 1
        if (i + 1 == len(events) or events[i + 1][0] != score) and false <= fp_rate * len(found):
            best = max(best, len(hits) / total if total else 0.0)
    return best


def _findings(data: CellData, k: int, grid: FloatArray) -> list[ScoredFinding]:
    prep = data.prepared[k]
    heat = to_source(grid, prep)
    mask, outline = prep.source_mask, data.mask(k)
    return [
        ScoredFinding(c, r, s, lesion_at(outline, c, r))
        for r, c, _, s in peaks(np.where(mask, heat, np.nan), mask)
    ]


def _class_of(abnormality: str) -> str:
    return next((n for n, codes in CLASSES.items() if abnormality.upper() in codes), "other")


def localisation(
    found: Sequence[Sequence[Sequence[ScoredFinding]]],
    lesions: Sequence[Sequence[Lesion]],
    abnormal: npt.NDArray[np.bool_],
    classes: Sequence[str],
) -> dict[str, Any]:
    """Top-1 hit rate (per class too) and FROC points; ``found[seed][image]``."""
    usable = [k for k in range(len(lesions)) if not abnormal[k] or lesions[k]]
    located = [k for k in usable if abnormal[k]]
    hits = np.array(
        [
            [_hit(f[k][0], lesions[k], HIT_FACTOR) >= 0 if f[k] else False for k in located]
            for f in found
        ],
        float,
    ).mean(0)
    out: dict[str, Any] = {
        "images_with_lesions": len(located),
        "lesions": int(sum(len(lesions[k]) for k in located)),
        "top1_within_1.5_radii": round(float(hits.mean()), 3),
    }
    for name in [*CLASSES, "other"]:
        rows = [i for i, k in enumerate(located) if classes[k] == name]
        if rows:
            out[f"top1_within_1.5_radii_{name}"] = [round(float(hits[rows].mean()), 3), len(rows)]
    for factor in (1.0, HIT_FACTOR):
        truth = [lesions[k] if abnormal[k] else () for k in usable]
        for rate in (0.5, 1.0, 2.0):
            key = f"froc_sensitivity_{factor:g}x_radius_at_{rate:g}_fp_per_image"
            points = [froc_sensitivity([f[k] for k in usable], truth, factor, rate) for f in found]
            out[key] = round(float(np.mean(points)), 3)
    return out


def _aucs(
    scores: Sequence[FloatArray],
    y: npt.NDArray[np.bool_],
    classes: Sequence[str],
    malignant: npt.NDArray[np.bool_],
    women: Sequence[str],
) -> dict[str, Any]:
    normal = ~y
    tasks = {
        "abnormal_vs_normal": (y, np.ones(len(y), bool)),
        "malignant_vs_rest": (malignant, np.ones(len(y), bool)),
    }
    for name in CLASSES:
        member = np.array([c == name for c in classes])
        tasks[f"{name}_vs_normal"] = (member, member | normal)
    mean = np.mean(scores, 0)
    out: dict[str, Any] = {}
    for name, (labels, counted) in tasks.items():
        if not labels[counted].any():
            continue
        per_seed = [auc(s[counted], labels[counted]) for s in scores]
        low, high = patient_bootstrap_auc(
            mean[counted], labels[counted], [w for w, c in zip(women, counted, strict=True) if c]
        )
        out[name] = {
            "mean": round(float(np.mean(per_seed)), 4),
            "per_seed": [round(v, 4) for v in per_seed],
            "ci95": [round(low, 4), round(high, 4)],
            "images": int(counted.sum()),
            "positives": int(labels[counted].sum()),
        }
    return out


def _delta_ci(
    new: FloatArray,
    old: FloatArray,
    y: npt.NDArray[np.bool_],
    women: Sequence[str],
    n_boot: int = 2000,
) -> list[float]:
    """Patient-bootstrap 95 % CI of AUC(new) - AUC(old), paired on the same resamples."""
    ids = sorted(set(women))
    members = {w: [i for i, v in enumerate(women) if v == w] for w in ids}
    rng = np.random.default_rng(0)
    deltas = []
    for _ in range(n_boot):
        rows = np.concatenate([members[ids[j]] for j in rng.integers(0, len(ids), len(ids))])
        if y[rows].all() or not y[rows].any():
            continue
        deltas.append(auc(new[rows], y[rows]) - auc(old[rows], y[rows]))
    low, high = np.quantile(deltas, [0.025, 0.975])
    return [round(float(low), 4), round(float(high), 4)]


def cross_validate_lesion(
    data: CellData,
    x: FloatArray,
    y: npt.NDArray[np.bool_],
    malignant: npt.NDArray[np.bool_],
    abnormality: Sequence[str],
    women: Sequence[str],
    partner: npt.NDArray[np.int_],
    c: float,
    n_pca: int,
    lam: float,
    folds: int,
    seeds: Sequence[int],
    overlap: bool = False,
) -> tuple[dict[str, Any], FloatArray, FloatArray]:
    """CV figures, and the seed-mean out-of-fold exam logits and max differences (for the
    served head's beta and calibration). ``x``: exam vectors; all images paired. ``overlap``:
    outlines label every touched cell (``cell_labels``), to measure that rule against it."""
    if (partner < 0).any():
        raise ValueError("the lesion head's CV needs every breast paired")
    n = len(y)
    labels = [
        cell_labels(
            data.prepared[k],
            data.feats[k].grids["mid"],
            data.lesions[k],
            bool(y[k]),
            data.mask(k),
            overlap,
        )
        for k in range(n)
    ]
    classes = [_class_of(a) if y[k] else "normal" for k, a in enumerate(abnormality)]
    exam, diff, combined = [], [], []
    found: dict[str, list[list[list[ScoredFinding]]]] = {"lesion_head": [], "class_activation": []}
    for seed in seeds:
        fold = group_folds(women, y.astype(float), folds, seed)
        logit, top = np.zeros(n), np.zeros(n)
        lesion_found: list[list[ScoredFinding]] = [[] for _ in range(n)]
        cam_found: list[list[ScoredFinding]] = [[] for _ in range(n)]
        for f in tqdm(range(folds), desc=f"lesion CV seed {seed}", unit="fold", leave=False):
            train, test = np.where(fold != f)[0], np.where(fold == f)[0]
            head = fit_linear(x[train], y[train].astype(float), c, n_pca)
            logit[test] = head.logit(x[test])
            weight, bias = fit_cells(data, labels, partner, train, lam, seed * 100 + f)
            lesion = LesionHead(weight, bias, 1.0)
            for k in test:
                this, other = data.feats[k], data.feats[partner[k]]
                grid = lesion.grid(this, other)
                top[k] = float(np.max(grid))
                lesion_found[k] = _findings(data, k, grid)
                cam_found[k] = _findings(data, k, heatmap_grid(head, this, other))
        d = top - top[partner]
        beta = float(np.std(logit) / max(float(np.std(d)), 1e-9))
        exam.append(logit)
        diff.append(d)
        combined.append(logit + beta * d)
        found["lesion_head"].append(lesion_found)
        found["class_activation"].append(cam_found)
    mal = malignant.astype(bool)
    scores = {"exam_head": exam, "lesion_max_difference": diff, "combined": combined}
    result: dict[str, Any] = {
        "lambda": lam,
        "negatives_per_image": 200,
        "images": n,
        "patients": len(set(women)),
        "auc": {k: _aucs(v, y, classes, mal, women) for k, v in scores.items()},
        "combined_minus_exam_head_auc_ci95": _delta_ci(
            np.mean(combined, 0), np.mean(exam, 0), y, women
        ),
        "localisation": {k: localisation(v, data.lesions, y, classes) for k, v in found.items()},
    }
    return result, np.mean(exam, 0), np.mean(diff, 0)


def calibrate_combined(
    exam: FloatArray,
    diff: FloatArray,
    y: npt.NDArray[np.bool_],
    women: Sequence[str],
    sensitivity: float,
    folds: int,
) -> tuple[float, tuple[float, float], float, dict[str, Any]]:
    """beta, Platt pair and operating point of the served exam score from out-of-fold logits,
    and its calibration figures (Platt cross-fitted over women, so the ECE is not in-sample)."""
    beta = float(np.std(exam) / max(float(np.std(diff)), 1e-9))
    logit = exam + beta * diff
    yy = y.astype(float)
    a, b = platt(logit, yy)
    threshold = operating_point(sigmoid(a * logit + b), yy, sensitivity)
    fold = group_folds(women, yy, folds, 99)
    calibrated = np.zeros(len(yy))
    for f in range(folds):
        pa, pb = platt(logit[fold != f], yy[fold != f])
        calibrated[fold == f] = sigmoid(pa * logit[fold == f] + pb)
    ece, bins = reliability(calibrated, yy)
    point = operating_point(calibrated, yy, sensitivity)
    called = calibrated >= point
    figures = {
        "ece_platt_cross_fitted": round(ece, 4),
        "reliability": [[round(p, 3), round(o, 3), n] for p, o, n in bins],
        "operating_threshold": round(point, 4),
        "sensitivity": round(float(called[y].mean()), 4),
        "specificity": round(float((~called[~y]).mean()), 4),
        "false_positives": int((called & ~y).sum()),
        "false_negatives": int((~called & y).sum()),
    }
    return beta, (a, b), threshold, figures


def train_lesion_head(
    cells: CellData,
    records: Sequence[ImageRecord],
    x: FloatArray,
    pair: npt.NDArray[np.int_],
    settings: tuple[float, int, float],
    folds: int,
    seeds: Sequence[int],
    sensitivity: float,
) -> tuple[dict[str, Any], LesionHead, dict[str, Any]]:
    """CV figures (calibration included), the served lesion head fitted on every record, and
    its model.yaml entry. ``settings``: the exam head's C and PCA size, the lesion head's L2."""
    c, n_pca, lam = settings
    y = np.array([r.label != "normal" for r in records])
    women = [r.patient_id for r in records]
    figures, exam, diff = cross_validate_lesion(
        cells,
        x,
        y,
        np.array([r.label == "malignant" for r in records]),
        [r.abnormality for r in records],
        women,
        pair,
        c,
        n_pca,
        lam,
        folds,
        seeds,
    )
    labels = [
        cell_labels(
            cells.prepared[k], cells.feats[k].grids["mid"], r.lesions, bool(y[k]), cells.mask(k)
        )
        for k, r in enumerate(records)
    ]
    weight, bias = fit_cells(cells, labels, pair, range(len(records)), lam, 0)
    beta, ab, threshold, figures["calibration"] = calibrate_combined(
        exam, diff, y, women, sensitivity, folds
    )
    described = {"cells": LESION_CELLS, "lambda": lam, "beta": round(beta, 4)}
    return figures, LesionHead(weight, bias, beta, ab, threshold), described
