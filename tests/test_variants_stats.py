"""Hand-computable checks of the statistics: AUC with ties, bootstrap, MCC, DeLong, CV."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.stats.delong import delong_test, holm
from node.stats.roc import auc, bootstrap_auc_ci, call, confusion, mcc, roc_curve
from node.variants.combined import cross_validated_combined, fit_logistic
from node.variants.crossval import best_threshold, cv_threshold, stratified_folds


def _bool(xs: list[int]) -> np.ndarray:
    return np.array(xs, dtype=bool)


def _pairwise_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (pos.size * neg.size)


# ---------------------------------------------------------------- AUC


def test_auc_with_ties_by_hand() -> None:
    # positives 3, 2, 2 against negatives 2, 1: pairs won 1,1 | .5,1 | .5,1 -> 5/6
    scores = np.array([3.0, 2.0, 2.0, 2.0, 1.0])
    labels = _bool([1, 1, 1, 0, 0])
    assert auc(scores, labels) == pytest.approx(5 / 6)


def test_auc_all_tied_is_half_and_one_class_is_nan() -> None:
    assert auc(np.ones(4), _bool([1, 0, 1, 0])) == pytest.approx(0.5)
    assert math.isnan(auc(np.arange(3.0), _bool([1, 1, 1])))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=30))
def test_auc_equals_pairwise_definition(rows: list[tuple[int, bool]]) -> None:
    scores = np.array([r[0] for r in rows], dtype=float)
    labels = np.array([r[1] for r in rows], dtype=bool)
    if labels.all() or not labels.any():
        return
    assert auc(scores, labels) == pytest.approx(_pairwise_auc(scores[labels], scores[~labels]))


def test_bootstrap_ci_matches_naive_resampling_distribution() -> None:
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)  # rounding makes ties
    low, high = bootstrap_auc_ci(scores, labels, n_boot=4000, seed=3)
    pos, neg = scores[labels], scores[~labels]
    naive = [auc(np.r_[rng.choice(pos, 40), rng.choice(neg, 60)], labels) for _ in range(4000)]
    n_low, n_high = np.quantile(naive, [0.025, 0.975])
    assert low == pytest.approx(n_low, abs=0.015)
    assert high == pytest.approx(n_high, abs=0.015)
    assert low < auc(scores, labels) < high
    assert (low, high) == bootstrap_auc_ci(scores, labels, n_boot=4000, seed=3)  # fixed seed


# ---------------------------------------------------------------- MCC, thresholds


def test_mcc_by_hand() -> None:
    # TP 6, FP 2, TN 3, FN 1: (18 - 2) / sqrt(8 * 7 * 5 * 4)
    assert mcc(6, 2, 3, 1) == pytest.approx(16 / math.sqrt(1120))
    assert mcc(5, 0, 5, 0) == 1.0
    assert mcc(0, 5, 0, 5) == -1.0
    assert mcc(5, 5, 0, 0) == 0.0  # everything called damaging: undefined, reported as 0


def test_confusion_and_rates() -> None:
    called = _bool([1, 1, 0, 0, 1])
    labels = _bool([1, 0, 0, 1, 1])
    c = confusion(called, labels)
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 1, 1, 1)
    assert c.sensitivity == pytest.approx(2 / 3)
    assert c.specificity == pytest.approx(1 / 2)
    assert c.accuracy == pytest.approx(3 / 5)


def test_published_rule_direction_lower_is_damaging() -> None:
    sift = np.array([0.01, 0.05, 0.2])
    assert call(sift, 0.05, "<").tolist() == [True, False, False]
    assert call(sift, 0.05, "<=").tolist() == [True, True, False]
    fathmm = np.array([-2.0, -1.5, 0.3])
    assert call(fathmm, -1.5, "<=").tolist() == [True, True, False]


def test_best_threshold_by_hand() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    labels = _bool([0, 0, 1, 1])
    assert best_threshold(scores, labels, "mcc") == pytest.approx(2.5)
    assert best_threshold(scores, labels, "youden") == pytest.approx(2.5)
    # reversed labels: the best "higher is damaging" rule is to call everything damaging?
    # No: MCC of calling all is 0, of calling none is 0, of >= 3.5 is negative -> none (+inf).
    assert best_threshold(scores, ~labels, "mcc") == math.inf


def test_roc_curve_steps_through_ties() -> None:
    fpr, tpr = roc_curve(np.array([3.0, 2.0, 2.0, 1.0]), _bool([1, 1, 0, 0]))
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]


# ---------------------------------------------------------------- cross-validation


def test_stratified_folds_balance_classes() -> None:
    labels = np.r_[np.ones(10, bool), np.zeros(25, bool)]
    folds = stratified_folds(labels, 5, seed=0)
    for f in range(5):
        assert (labels[folds == f]).sum() == 2
        assert 6 <= (folds == f).sum() <= 8
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=0))


def test_cv_threshold_never_sees_test_rows() -> None:
    # Fold 0 holds scores 1-4, fold 1 scores 5-8, each labelled N N D D. A threshold tuned on
    # the fold itself would separate it perfectly (MCC 1). Tuned on the other fold, fold 0
    # gets 6.5 (calls nothing) and fold 1 gets 2.5 (calls everything): pooled MCC 0.
    scores = np.arange(1.0, 9.0)
    labels = _bool([0, 0, 1, 1, 0, 0, 1, 1])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    result = cv_threshold(scores, labels, folds, "mcc")
    assert result.fold_thresholds == (6.5, 2.5)
    c = result.confusion
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 2, 2, 2)
    assert c.mcc == 0.0


def test_cv_threshold_of_a_fold_ignores_that_folds_labels() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=60)
    labels = scores + rng.normal(scale=0.8, size=60) > 0
    folds = np.arange(60) % 3
    before = cv_threshold(scores, labels, folds).fold_thresholds
    flipped = labels.copy()
    flipped[folds == 0] = ~flipped[folds == 0]
    after = cv_threshold(scores, flipped, folds).fold_thresholds
    assert after[0] == before[0]  # fold 0's threshold comes only from folds 1 and 2
    assert after[1:] != before[1:]


# ---------------------------------------------------------------- DeLong


def _brute_force_delong(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """DeLong et al. 1988 structural components straight from the pairwise kernel."""

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = s[labels], s[~labels]
        psi = np.array([[1.0 if p > n else 0.5 if p == n else 0.0 for n in neg] for p in pos])
        return psi.mean(axis=1), psi.mean(axis=0)

    v10a, v01a = components(a)
    v10b, v01b = components(b)
    m, n = v10a.size, v01a.size
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    cov = s10 / m + s01 / n
    diff = v10a.mean() - v10b.mean()
    return diff, math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])


def test_delong_matches_brute_force_structural_components() -> None:
    labels = _bool([1, 1, 1, 1, 0, 0, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.6, 0.6, 0.7, 0.3, 0.2, 0.6, 0.1])  # with ties
    b = np.array([0.4, 0.9, 0.3, 0.5, 0.6, 0.5, 0.1, 0.2, 0.8])
    result = delong_test(a, b, labels)
    diff, se = _brute_force_delong(a, b, labels)
    assert result.auc_a == pytest.approx(_pairwise_auc(a[labels], a[~labels]))
    assert result.difference == pytest.approx(diff)
    assert result.se == pytest.approx(se)
    assert result.z == pytest.approx(diff / se)
    assert result.p_value == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(abs(diff / se) / 2**0.5))))


def test_delong_known_small_example() -> None:
    # A separates perfectly (AUC 1); B ranks the pairs 3 of 4 (AUC 0.75). Components of B:
    # V10 = (1, 0.5), V01 = (1, 0.5); A's are constant, so var(diff) = var of B's only:
    # s10 = s01 = 0.125 -> var = 0.125/2 + 0.125/2 = 0.125, z = 0.25 / sqrt(0.125).
    labels = _bool([1, 1, 0, 0])
    a = np.array([4.0, 3.0, 2.0, 1.0])
    b = np.array([4.0, 2.0, 3.0, 1.0])
    result = delong_test(a, b, labels)
    assert (result.auc_a, result.auc_b) == (1.0, 0.75)
    assert result.se == pytest.approx(math.sqrt(0.125))
    assert result.z == pytest.approx(0.25 / math.sqrt(0.125))


def test_delong_identical_tools_is_not_significant() -> None:
    labels = _bool([1, 0, 1, 0, 1])
    s = np.array([0.9, 0.1, 0.4, 0.5, 0.8])
    assert delong_test(s, s, labels).p_value == 1.0


def test_holm_adjustment() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


# ---------------------------------------------------------------- combined predictor


def test_logistic_regression_learns_direction_and_imputes_training_medians() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 2))
    y = x[:, 0] - 0.5 * x[:, 1] + rng.normal(scale=0.5, size=200) > 0
    x[::7, 1] = np.nan
    model = fit_logistic(x, y, l2=1.0)
    assert model.weights[0] > 0 > model.weights[1]
    assert model.medians[1] == pytest.approx(np.nanmedian(x[:, 1]))
    assert np.all(np.isfinite(model.predict(x)))


def test_combined_out_of_fold_predictions_do_not_use_test_rows() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(90, 3))
    y = x[:, 0] + rng.normal(scale=0.7, size=90) > 0
    folds = stratified_folds(y, 3, seed=0)
    first = cross_validated_combined(x, y, folds)
    flipped = y.copy()
    flipped[folds == 0] = ~flipped[folds == 0]  # change only fold 0's truth
    second = cross_validated_combined(x, flipped, folds)
    # fold 0 is predicted by a model (and threshold) trained on folds 1-2 only
    assert np.allclose(first.probabilities[folds == 0], second.probabilities[folds == 0])
    assert first.fold_thresholds[0] == second.fold_thresholds[0]
    assert not np.allclose(first.probabilities[folds != 0], second.probabilities[folds != 0])


@pytest.mark.parametrize("k", [2, 3])
def test_folds_cover_every_row_once(k: int) -> None:
    labels = _bool([1, 0] * 6)
    folds = stratified_folds(labels, k, seed=9)
    assert sorted(set(folds.tolist())) == list(range(k))
    assert all(len(list(g)) > 0 for _, g in itertools.groupby(sorted(folds.tolist())))
