"""False positives and false negatives at the same sensitivity, against the previous model and
a stated simple baseline: the comparison the screening programme asks for.

The model's sensitivity at its own operating point on the split fixes the sensitivity; the
previous model is thresholded to reach at least that sensitivity on the same images; the
simple baseline is a coin flip that calls an image positive with probability equal to that
sensitivity (expected FN = (1 - s) x positives, FP = s x negatives).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from node.evaluation.run import ScoredModel


def _labels(model: ScoredModel) -> np.ndarray:
    return np.array([s.record.label != "normal" for s in model.scores], dtype=bool)


def errors_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, int]:
    called = scores >= threshold
    return {"FP": int((called & ~labels).sum()), "FN": int((~called & labels).sum())}


def threshold_for(scores: np.ndarray, labels: np.ndarray, sensitivity: float) -> float:
    """The highest threshold reaching at least ``sensitivity`` on these images."""
    positives = np.sort(scores[labels])[::-1]
    needed = max(1, math.ceil(sensitivity * len(positives) - 1e-9))
    return float(positives[min(needed, len(positives)) - 1])


def same_sensitivity(model: ScoredModel, baseline: ScoredModel | None) -> dict[str, Any]:
    """FP and FN of the model at its operating point, and of the others at its sensitivity."""
    labels = _labels(model)
    scores = np.array([s.score for s in model.scores])
    own = errors_at(scores, labels, model.folder.spec.operating_point)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    sensitivity = 1.0 - own["FN"] / positives if positives else math.nan
    rows: dict[str, Any] = {
        "images": len(labels),
        "positives": positives,
        "negatives": negatives,
        "sensitivity": round(sensitivity, 4),
        model.ref: own,
    }
    if baseline is not None:
        by_id = {s.record.image_id: s.score for s in baseline.scores}
        other = np.array([by_id[s.record.image_id] for s in model.scores])
        rows[baseline.ref] = errors_at(other, labels, threshold_for(other, labels, sensitivity))
    rows["coin flip at the same sensitivity (expected)"] = {
        "FP": round(sensitivity * negatives, 1),
        "FN": round((1.0 - sensitivity) * positives, 1),
    }
    return rows
