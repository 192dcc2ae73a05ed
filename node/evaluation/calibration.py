"""Calibration: does a score of 0.3 mean a 30 % chance? Reliability bins, ECE and Brier score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Reliability:
    bin_edges: list[float]
    mean_score: list[float | None]  # per bin; None when empty
    observed: list[float | None]  # fraction positive per bin
    counts: list[int]
    ece: float  # expected calibration error: count-weighted |observed - mean score|
    brier: float


def reliability(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.bool_], bins: int = 10
) -> Reliability:
    """Equal-width bins over [0, 1]."""
    if scores.size == 0:
        raise ValueError("no scores")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    mean_score: list[float | None] = []
    observed: list[float | None] = []
    counts = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        counts.append(n)
        if n:
            m, o = float(scores[mask].mean()), float(labels[mask].mean())
            mean_score.append(m)
            observed.append(o)
            ece += n / scores.size * abs(o - m)
        else:
            mean_score.append(None)
            observed.append(None)
    brier = float(np.mean((scores - labels.astype(np.float64)) ** 2))
    return Reliability(edges.tolist(), mean_score, observed, counts, ece, brier)
