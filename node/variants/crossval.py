"""Stratified folds and thresholds chosen on training folds only, applied to the held-out fold.

The pooled out-of-fold calls estimate how a threshold tuned on data like this would do on
new variants; choosing it on all rows would flatter every tool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from node.stats.roc import Confusion, confusion, mcc

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
Criterion = Literal["mcc", "youden"]


def stratified_folds(labels: BoolArray, k: int, seed: int) -> IntArray:
    """Fold number per row; each class is shuffled then dealt round-robin over the folds."""
    if k < 2:
        raise ValueError("need at least 2 folds")
    rng = np.random.default_rng(seed)
    folds = np.empty(labels.size, dtype=np.int64)
    offset = 0
    for cls in (True, False):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(idx.size)]
        folds[idx] = (np.arange(idx.size) + offset) % k
        offset += idx.size  # continue dealing where the other class stopped: even fold sizes
    return folds


def best_threshold(scores: FloatArray, labels: BoolArray, criterion: Criterion = "mcc") -> float:
    """Threshold t maximising the criterion for calls ``scores >= t`` (higher = damaging).

    Candidates lie midway between consecutive distinct scores, plus "call none" (+inf) and
    "call all" (-inf); ties go to the highest threshold (fewest damaging calls).
    """
    values = np.unique(scores)[::-1]  # distinct, descending
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.r_[0, np.cumsum(y)[last_of_tie]].astype(np.float64)
    fp = np.r_[0, np.cumsum(~y)[last_of_tie]].astype(np.float64)
    n_pos, n_neg = float(y.sum()), float((~y).sum())
    fn, tn = n_pos - tp, n_neg - fp
    if criterion == "mcc":
        value = np.array([mcc(*c) for c in zip(tp, fp, tn, fn, strict=True)])
    elif criterion == "youden":
        sens = tp / n_pos if n_pos else np.zeros_like(tp)
        spec = tn / n_neg if n_neg else np.zeros_like(tn)
        value = sens + spec - 1.0
    else:
        raise ValueError(f"unknown criterion {criterion!r}")
    best = int(np.argmax(value))  # first maximum = highest threshold
    if best == 0:
        return math.inf
    if best == values.size:
        return -math.inf
    return float((values[best - 1] + values[best]) / 2.0)


@dataclass(frozen=True)
class CvThreshold:
    """Pooled out-of-fold confusion and the threshold each fold's training rows chose."""

    confusion: Confusion
    fold_thresholds: tuple[float, ...]  # oriented scale: call if oriented score >= t


def cv_threshold(
    scores: FloatArray, labels: BoolArray, folds: IntArray, criterion: Criterion = "mcc"
) -> CvThreshold:
    """For each fold: pick the threshold on the other folds, call the fold's rows with it."""
    called = np.zeros(labels.size, dtype=bool)
    thresholds: list[float] = []
    for fold in np.unique(folds):
        test = folds == fold
        train = ~test
        if not train.any():
            raise ValueError("a fold holds every row; use more rows or fewer folds")
        t = best_threshold(scores[train], labels[train], criterion)
        called[test] = scores[test] >= t
        thresholds.append(t)
    return CvThreshold(confusion(called, labels), tuple(thresholds))
