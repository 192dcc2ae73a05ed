"""Fitting the exam-aware model's linear head, as plain numpy arrays.

standardise -> PCA (scores scaled so the kept components' mean variance is 1, not whitened, so
the L2 penalty shrinks low-variance directions more) -> L2 logistic regression with a FIXED C
(no inner search: the recipe's C was chosen by CV once, and searching again on ~150 images
only adds noise) -> Platt scaling and the operating point from grouped out-of-fold logits of
the training data, never from in-sample scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import optimize

from node.inference.contralateral import Head, sigmoid

FloatArray = npt.NDArray[np.float64]
CALIBRATION_FOLDS = 5


def group_folds(groups: Sequence[str], y: FloatArray, k: int, seed: int) -> npt.NDArray[np.int_]:
    """Fold per sample: whole women per fold, stratified by each woman's highest label."""
    rng = np.random.default_rng(seed)
    g = np.asarray(groups)
    unique = np.unique(g)
    worst = np.array([y[g == w].max() for w in unique])
    fold_of: dict[str, int] = {}
    for label in np.unique(worst):
        women = rng.permutation(unique[worst == label])
        offset = int(rng.integers(k))
        for i, woman in enumerate(women):
            fold_of[str(woman)] = (i + offset) % k
    return np.array([fold_of[str(w)] for w in g])


def logistic(z: FloatArray, y: FloatArray, c: float) -> tuple[FloatArray, float]:
    """L2 logistic regression, C * sum(loss) + |w|^2 / 2, intercept unpenalised."""
    k = z.shape[1]
    s = 2 * y - 1.0

    def loss_grad(p: FloatArray) -> tuple[float, FloatArray]:
        w, b = p[:k], p[k]
        m = s * (z @ w + b)
        g = -s * sigmoid(-m)
        loss = c * float(np.logaddexp(0, -m).sum()) + 0.5 * float(w @ w)
        return loss, np.concatenate([c * (z.T @ g) + w, [c * g.sum()]])

    result = optimize.minimize(loss_grad, np.zeros(k + 1), jac=True, method="L-BFGS-B")
    return np.asarray(result.x[:k]), float(result.x[k])


def fit_linear(x: FloatArray, y: FloatArray, c: float, n_pca: int) -> Head:
    """Standardise, PCA ``n_pca``, logistic regression: an uncalibrated head."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    _, s, vt = np.linalg.svd((x - mu) / sd, full_matrices=False)
    k = min(n_pca, vt.shape[0])
    components = vt[:k] / math.sqrt(float(np.mean(s[:k] ** 2)) / len(x))
    coef, intercept = logistic(((x - mu) / sd) @ components.T, y, c)
    return Head(mu, sd, components, coef, intercept)


def platt(logit: FloatArray, y: FloatArray) -> tuple[float, float]:
    """p = sigmoid(a * logit + b), fitted by (nearly) unregularised logistic regression."""
    w, b = logistic(logit[:, None], y, 1e4)
    return float(w[0]), b


def operating_point(p: FloatArray, y: FloatArray, sensitivity: float) -> float:
    """The largest threshold (called positive: p >= it) reaching ``sensitivity``."""
    positives = np.sort(p[y > 0.5])[::-1]
    i = min(len(positives) - 1, math.ceil(sensitivity * len(positives)) - 1)
    return float(positives[max(i, 0)])


def out_of_fold(
    x: FloatArray, y: FloatArray, groups: Sequence[str], c: float, n_pca: int, folds: int, seed: int
) -> FloatArray:
    """Logits of each image from a head fitted without its woman (patient-level folds)."""
    fold = group_folds(groups, y, folds, seed)
    oof = np.zeros(len(y))
    for f in range(folds):
        train = fold != f
        oof[~train] = fit_linear(x[train], y[train], c, n_pca).logit(x[~train])
    return oof


def fit_head(
    x: FloatArray,
    y: FloatArray,
    groups: Sequence[str],
    c: float,
    n_pca: int,
    sensitivity: float,
    seed: int = 0,
) -> Head:
    """The served head: fitted on all of ``x``, Platt and operating point from OOF logits."""
    head = fit_linear(x, y, c, n_pca)
    oof = out_of_fold(x, y, groups, c, n_pca, CALIBRATION_FOLDS, seed + 2000)
    a, b = platt(oof, y)
    threshold = operating_point(sigmoid(a * oof + b), y, sensitivity)
    return Head(head.mu, head.sd, head.components, head.coef, head.intercept, (a, b), threshold)


def reliability(p: FloatArray, y: FloatArray, bins: int = 10) -> tuple[float, list[list[float]]]:
    """Expected calibration error (equal-width bins) and the (mean p, observed rate, count)
    rows of the reliability plot."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            rows.append([float(p[inside].mean()), float(y[inside].mean()), int(inside.sum())])
            ece += abs(rows[-1][0] - rows[-1][1]) * float(inside.mean())
    return ece, rows
