"""A combined predictor: L2 logistic regression over all tools, evaluated out of fold.

Everything learned from data — the medians that fill missing scores, the standardisation,
the weights, and the decision threshold — is learned on the training folds only, so the
out-of-fold probabilities are an honest estimate for new variants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from node.variants.crossval import Criterion, best_threshold

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LogisticModel:
    """Median imputation + z-scoring + logistic weights, all from one training set."""

    medians: FloatArray
    means: FloatArray
    scales: FloatArray
    weights: FloatArray  # per standardised feature
    intercept: float

    def predict(self, x: FloatArray) -> FloatArray:
        """Probability of the positive class for rows of oriented scores (NaN allowed)."""
        probability: FloatArray = expit(self._standardise(x) @ self.weights + self.intercept)
        return probability

    def _standardise(self, x: FloatArray) -> FloatArray:
        filled = np.where(np.isnan(x), self.medians, x)
        return (filled - self.means) / self.scales


def fit_logistic(
    x: FloatArray, y: BoolArray, l2: float = 1.0, max_iter: int = 100, tol: float = 1e-9
) -> LogisticModel:
    """Newton-Raphson on the L2-penalised log-likelihood (intercept unpenalised)."""
    all_missing = np.isnan(x).all(axis=0)
    medians = np.zeros(x.shape[1])
    medians[~all_missing] = np.nanmedian(x[:, ~all_missing], axis=0)
    filled = np.where(np.isnan(x), medians, x)
    means = filled.mean(axis=0)
    scales = filled.std(axis=0)
    scales[scales == 0] = 1.0
    z = np.column_stack([np.ones(x.shape[0]), (filled - means) / scales])
    target = y.astype(np.float64)
    beta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(max_iter):
        p = expit(z @ beta)
        gradient = z.T @ (p - target) + penalty * beta
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-10 * np.eye(z.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return LogisticModel(medians, means, scales, beta[1:].copy(), float(beta[0]))


@dataclass(frozen=True)
class CombinedPrediction:
    """Out-of-fold probabilities and calls (threshold tuned on each training fold)."""

    probabilities: FloatArray
    cv_called: BoolArray
    fold_thresholds: tuple[float, ...]
    full_model: LogisticModel  # fitted on all rows: for reading the weights only


def cross_validated_combined(
    x: FloatArray,
    y: BoolArray,
    folds: IntArray,
    l2: float = 1.0,
    criterion: Criterion = "mcc",
) -> CombinedPrediction:
    """Fit on k-1 folds, predict the held-out fold; the threshold comes from training fits."""
    probabilities = np.empty(y.size)
    called = np.zeros(y.size, dtype=bool)
    thresholds: list[float] = []
    for fold in np.unique(folds):
        test = folds == fold
        model = fit_logistic(x[~test], y[~test], l2)
        t = best_threshold(model.predict(x[~test]), y[~test], criterion)
        probabilities[test] = model.predict(x[test])
        called[test] = probabilities[test] >= t
        thresholds.append(t)
    return CombinedPrediction(probabilities, called, tuple(thresholds), fit_logistic(x, y, l2))
