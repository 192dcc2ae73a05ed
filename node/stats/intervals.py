"""Image-level metrics: AUC with a patient-level bootstrap CI, and rates at operating points.

The AUC itself is ``node.stats.roc.auc`` (Mann-Whitney). Its CI resamples PATIENTS,
not images: a woman's two breasts are correlated, and resampling images as if independent
would make the interval too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from node.stats.roc import Confusion, auc, confusion

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Z95 = 1.959963984540054


def patient_bootstrap_auc(
    scores: FloatArray,
    labels: BoolArray,
    patients: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of the AUC over bootstrap resamples of patients (clusters)."""
    ids = sorted(set(patients))
    if len(ids) < 2 or labels.all() or not labels.any():
        return math.nan, math.nan
    index = {p: i for i, p in enumerate(ids)}
    groups = [[] for _ in ids]  # type: list[list[int]]
    for i, p in enumerate(patients):
        groups[index[p]].append(i)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in tqdm(range(n_boot), desc="bootstrap", leave=False, delay=1.0):
        chosen = rng.integers(0, len(ids), len(ids))
        rows = np.concatenate([groups[c] for c in chosen])
        value = auc(scores[rows], labels[rows])
        if not math.isnan(value):
            estimates.append(value)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(estimates), [alpha, 1.0 - alpha])
    return float(low), float(high)


def wilson(successes: int, total: int) -> tuple[float, float] | None:
    """Wilson score 95 % interval of a proportion (sound for small counts, unlike Wald)."""
    if total == 0:
        return None
    p = successes / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(successes: int, total: int) -> dict[str, Any]:
    ci = wilson(successes, total)
    return {
        "value": successes / total if total else None,
        "ci": list(ci) if ci else None,
        "n": total,
    }


def at_threshold(scores: FloatArray, labels: BoolArray, threshold: float) -> dict[str, Any]:
    """Sensitivity, specificity, accuracy, PPV, NPV (each with a Wilson CI) at score >= threshold."""
    c: Confusion = confusion(scores >= threshold, labels)
    return {
        "threshold": threshold,
        "tp": c.tp,
        "fp": c.fp,
        "tn": c.tn,
        "fn": c.fn,
        "sensitivity": _rate(c.tp, c.tp + c.fn),
        "specificity": _rate(c.tn, c.tn + c.fp),
        "accuracy": _rate(c.tp + c.tn, c.n),
        "ppv": _rate(c.tp, c.tp + c.fp),
        "npv": _rate(c.tn, c.tn + c.fn),
    }


def auc_with_ci(
    scores: FloatArray, labels: BoolArray, patients: Sequence[str], n_boot: int, seed: int
) -> dict[str, Any]:
    value = auc(scores, labels)
    low, high = patient_bootstrap_auc(scores, labels, patients, n_boot, seed)
    return {
        "value": None if math.isnan(value) else value,
        "ci": None if math.isnan(low) else [low, high],
        "positives": int(labels.sum()),
        "negatives": int((~labels).sum()),
    }
