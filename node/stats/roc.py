"""Discrimination and confusion metrics on scores oriented so that higher means damaging."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata
from tqdm import tqdm

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def auc(scores: FloatArray, labels: BoolArray) -> float:
    """Mann-Whitney AUC: P(positive scores higher) + 0.5 P(tie), via mid-ranks."""
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)  # average ranks for ties
    u = float(ranks[labels].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def bootstrap_auc_ci(
    scores: FloatArray,
    labels: BoolArray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    progress: bool = False,
) -> tuple[float, float]:
    """Percentile CI of the AUC, resampling positives and negatives separately.

    Stratified so every replicate has both classes. Each replicate is a multinomial
    reweighting, and the AUC of a reweighting is computed from cumulative negative weights
    below each positive (O(n) per replicate), so 2000 replicates take milliseconds.
    """
    pos = scores[labels]
    neg = np.sort(scores[~labels])
    m, n = pos.size, neg.size
    if m == 0 or n == 0 or n_boot < 1:
        return math.nan, math.nan
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    upto = np.searchsorted(neg, pos, side="right")  # ... below or tied
    rng = np.random.default_rng(seed)
    estimates = np.empty(n_boot)
    chunk = 250
    starts = range(0, n_boot, chunk)
    for start in tqdm(
        starts, desc="bootstrap", unit="chunk", delay=1.0, disable=not progress, leave=False
    ):
        b = min(chunk, n_boot - start)
        w_pos = _resample_counts(rng, m, b)
        w_neg = _resample_counts(rng, n, b)
        cum = np.concatenate([np.zeros((b, 1)), np.cumsum(w_neg, axis=1)], axis=1)
        placement = 0.5 * (cum[:, below] + cum[:, upto])  # weighted wins + half ties
        estimates[start : start + b] = (w_pos * placement).sum(axis=1) / (m * n)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(estimates, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _resample_counts(rng: np.random.Generator, size: int, reps: int) -> FloatArray:
    """How often each of ``size`` items is drawn in each of ``reps`` bootstrap samples."""
    draws = rng.integers(0, size, size=(reps, size)) + size * np.arange(reps)[:, None]
    counts = np.bincount(draws.ravel(), minlength=reps * size)
    return counts.reshape(reps, size).astype(np.float64)


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary call against truth, with the usual rates derived from them."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def sensitivity(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.n)

    @property
    def mcc(self) -> float:
        """Matthews correlation; 0 when a margin is empty (all called one way), by convention."""
        return mcc(self.tp, self.fp, self.tn, self.fn)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "sensitivity": _none_if_nan(self.sensitivity),
            "specificity": _none_if_nan(self.specificity),
            "accuracy": _none_if_nan(self.accuracy),
            "mcc": _none_if_nan(self.mcc),
        }


def mcc(tp: float, fp: float, tn: float, fn: float) -> float:
    """(TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)), 0 if the denominator is 0."""
    denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    if denominator == 0:
        return 0.0
    return float((tp * tn - fp * fn) / math.sqrt(denominator))


def confusion(called: BoolArray, labels: BoolArray) -> Confusion:
    """Confusion counts of damaging calls ``called`` against truth ``labels``."""
    return Confusion(
        tp=int((called & labels).sum()),
        fp=int((called & ~labels).sum()),
        tn=int((~called & ~labels).sum()),
        fn=int((~called & labels).sum()),
    )


def call(scores: FloatArray, threshold: float, comparison: str) -> BoolArray:
    """Damaging calls by a published rule ``score <comparison> threshold``."""
    if comparison == ">":
        return scores > threshold
    if comparison == ">=":
        return scores >= threshold
    if comparison == "<":
        return scores < threshold
    if comparison == "<=":
        return scores <= threshold
    raise ValueError(f"unknown comparison {comparison!r}")


def roc_curve(scores: FloatArray, labels: BoolArray) -> tuple[FloatArray, FloatArray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = np.cumsum(~y)[last_of_tie]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x
