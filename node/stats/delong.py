"""DeLong test for two correlated AUCs (same variants, two tools).

Fast algorithm of Sun & Xu (2014), IEEE Signal Process Lett 21:1389, which gets DeLong's
structural components (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837) from
mid-ranks in O(n log n) instead of the O(mn) pairwise kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm, rankdata

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class DelongResult:
    """AUCs of A and B on the shared variants, their difference and its test."""

    n: int
    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    se: float
    z: float
    p_value: float


def delong_covariance(scores: FloatArray, labels: BoolArray) -> tuple[FloatArray, FloatArray]:
    """AUCs and their DeLong covariance for ``scores`` of shape (tools, variants)."""
    x = scores[:, labels]  # positives
    y = scores[:, ~labels]  # negatives
    m, n = x.shape[1], y.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two variants of each class")
    tx = np.apply_along_axis(rankdata, 1, x)
    ty = np.apply_along_axis(rankdata, 1, y)
    tz = np.apply_along_axis(rankdata, 1, np.concatenate([x, y], axis=1))
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # per positive: share of negatives it beats
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: share of positives beating it
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def delong_test(a: FloatArray, b: FloatArray, labels: BoolArray) -> DelongResult:
    """Two-sided test of AUC(a) = AUC(b) on the same variants (no missing values)."""
    aucs, cov = delong_covariance(np.vstack([a, b]), labels)
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    difference = float(aucs[0] - aucs[1])
    if variance <= 1e-15:  # identical rankings: no evidence of a difference
        se, z, p = 0.0, 0.0, 1.0
    else:
        se = math.sqrt(variance)
        z = difference / se
        p = float(2.0 * norm.sf(abs(z)))
    return DelongResult(int(labels.size), float(aucs[0]), float(aucs[1]), difference, se, z, p)


def holm(p_values: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error over the comparisons made)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    k = len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
