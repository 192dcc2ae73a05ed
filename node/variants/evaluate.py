"""The comparison itself: per tool metrics, paired DeLong tests against the best tool, and
the cross-validated combined predictor, for all variants and for each gene."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from node.stats.delong import delong_test, holm
from node.stats.roc import (
    Confusion,
    auc,
    bootstrap_auc_ci,
    call,
    confusion,
    roc_curve,
)
from node.variants.combined import cross_validated_combined
from node.variants.crossval import Criterion, cv_threshold, stratified_folds
from node.variants.dataset import Dataset

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

COMBINED_NAME = "combined (CV logistic regression)"


@dataclass(frozen=True)
class Settings:
    """Knobs of the analysis; the defaults are what the CLI uses."""

    folds: int = 5
    n_boot: int = 2000
    seed: int = 0
    level: float = 0.95
    criterion: Criterion = "mcc"
    alpha: float = 0.05
    best_min_coverage: float = 0.5
    l2: float = 1.0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError("folds must be at least 2")
        if not 0 < self.level < 1 or not 0 < self.alpha < 1:
            raise ValueError("level and alpha must lie in (0, 1)")
        if not 0 <= self.best_min_coverage <= 1:
            raise ValueError("best_min_coverage must lie in [0, 1]")
        if self.l2 < 0 or self.n_boot < 0:
            raise ValueError("l2 and n_boot must not be negative")


@dataclass(frozen=True)
class ToolResult:
    """One tool on the variants it scores."""

    column: str
    tool: str
    direction: str
    n: int
    n_pos: int
    n_neg: int
    coverage: float
    auc: float
    auc_ci_low: float
    auc_ci_high: float
    published_rule: str  # e.g. "< 0.05"; empty when no published cut-off
    published: Confusion | None
    cv: Confusion | None
    cv_thresholds: tuple[float, ...]  # in the tool's own units, one per fold
    note: str = ""


@dataclass(frozen=True)
class PairedComparison:
    """DeLong test of the best tool against another, on the variants both score."""

    best: str
    other: str
    n: int
    auc_best: float
    auc_other: float
    difference: float
    z: float
    p_value: float
    p_holm: float
    significant: bool


@dataclass(frozen=True)
class Curve:
    label: str
    fpr: FloatArray
    tpr: FloatArray
    auc: float


@dataclass(frozen=True)
class Evaluation:
    """Everything reported for one set of variants (all, or one gene)."""

    name: str
    n: int
    n_pos: int
    n_neg: int
    tools: tuple[ToolResult, ...]
    best: str | None
    comparisons: tuple[PairedComparison, ...]
    combined: ToolResult | None
    combined_vs_best: PairedComparison | None
    combined_weights: dict[str, float] = field(default_factory=dict)
    curves: tuple[Curve, ...] = ()
    skipped: tuple[str, ...] = ()  # what could not be computed and why

    def ranked(self) -> list[ToolResult]:
        """Tools by AUC, highest first; tools without an AUC last."""
        return sorted(self.tools, key=lambda t: -(t.auc if not math.isnan(t.auc) else -1))


def evaluate(data: Dataset, settings: Settings, name: str = "all") -> Evaluation:
    """Run the whole comparison on ``data``."""
    y = data.labels
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    skipped: list[str] = []
    k = min(settings.folds, n_pos, n_neg)
    folds = stratified_folds(y, k, settings.seed) if k >= 2 else None
    if folds is None:
        skipped.append(
            f"cross-validation: needs 2 variants of each class, have {n_pos} positive and "
            f"{n_neg} negative"
        )
    elif k < settings.folds:
        skipped.append(
            f"cross-validation: {k} folds instead of {settings.folds} (smallest class too small)"
        )
    results: list[ToolResult] = []
    curves: list[Curve] = []
    iterator = tqdm(
        range(len(data.tools)),
        desc=f"tools [{name}]",
        unit="tool",
        delay=1.0,
        disable=not settings.progress,
        leave=False,
    )
    for j in iterator:
        result, curve = _evaluate_tool(data, j, folds, settings)
        results.append(result)
        if curve is not None:
            curves.append(curve)
    best, comparisons = _compare_best(data, results, settings)
    combined: ToolResult | None = None
    weights: dict[str, float] = {}
    combined_vs_best: PairedComparison | None = None
    if folds is not None and data.tools:
        combined, weights, combined_vs_best, curve = _evaluate_combined(data, folds, best, settings)
        curves.append(curve)
    elif data.tools:
        skipped.append("combined predictor: needs cross-validation")
    return Evaluation(
        name,
        data.n,
        n_pos,
        n_neg,
        tuple(results),
        best,
        tuple(comparisons),
        combined,
        combined_vs_best,
        weights,
        tuple(curves),
        tuple(skipped),
    )


def _evaluate_tool(
    data: Dataset, j: int, folds: npt.NDArray[np.int64] | None, settings: Settings
) -> tuple[ToolResult, Curve | None]:
    spec = data.tools[j]
    scored = ~np.isnan(data.scores[:, j])
    raw = data.scores[scored, j]
    s = data.oriented(j)[scored]
    y = data.labels[scored]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    area = auc(s, y)
    low, high = (math.nan, math.nan)
    if not math.isnan(area):
        low, high = bootstrap_auc_ci(
            s, y, settings.n_boot, settings.seed, settings.level, settings.progress
        )
    published = None
    if spec.threshold is not None and spec.comparison is not None and y.size:
        published = confusion(call(raw, spec.threshold, spec.comparison), y)
    cv: Confusion | None = None
    thresholds: tuple[float, ...] = ()
    if folds is not None and min(n_pos, n_neg) >= 2:
        result = cv_threshold(s, y, folds[scored], settings.criterion)
        cv = result.confusion
        sign = -1.0 if spec.direction == "lower" else 1.0
        thresholds = tuple(sign * t for t in result.fold_thresholds)
    curve = None
    if not math.isnan(area):
        fpr, tpr = roc_curve(s, y)
        curve = Curve(spec.column, fpr, tpr, area)
    coverage = float(scored.sum() / data.n) if data.n else math.nan
    return ToolResult(
        spec.column,
        spec.tool,
        spec.direction,
        int(scored.sum()),
        n_pos,
        n_neg,
        coverage,
        area,
        low,
        high,
        spec.rule,
        published,
        cv,
        thresholds,
        spec.note,
    ), curve


def _compare_best(
    data: Dataset, results: list[ToolResult], settings: Settings
) -> tuple[str | None, list[PairedComparison]]:
    """Best = highest AUC among tools scoring at least ``best_min_coverage`` of variants."""
    candidates = [
        r for r in results if not math.isnan(r.auc) and r.coverage >= settings.best_min_coverage
    ]
    if not candidates:
        return None, []
    best = max(candidates, key=lambda r: r.auc)
    b = [t.column for t in data.tools].index(best.column)
    raw: list[tuple[str, int, float, float, float, float, float]] = []
    for j, other in enumerate(results):
        if other.column == best.column or math.isnan(other.auc):
            continue
        shared = ~np.isnan(data.scores[:, b]) & ~np.isnan(data.scores[:, j])
        y = data.labels[shared]
        if min(int(y.sum()), int((~y).sum())) < 2:
            continue
        test = delong_test(data.oriented(b)[shared], data.oriented(j)[shared], y)
        raw.append(
            (other.column, test.n, test.auc_a, test.auc_b, test.difference, test.z, test.p_value)
        )
    adjusted = holm([r[6] for r in raw])
    comparisons = [
        PairedComparison(best.column, col, n, a, o, d, z, p, q, q < settings.alpha)
        for (col, n, a, o, d, z, p), q in zip(raw, adjusted, strict=True)
    ]
    return best.column, comparisons


def _evaluate_combined(
    data: Dataset, folds: npt.NDArray[np.int64], best: str | None, settings: Settings
) -> tuple[ToolResult, dict[str, float], PairedComparison | None, Curve]:
    x = np.column_stack([data.oriented(j) for j in range(len(data.tools))])
    y = data.labels
    prediction = cross_validated_combined(x, y, folds, settings.l2, settings.criterion)
    p = prediction.probabilities
    area = auc(p, y)
    low, high = bootstrap_auc_ci(
        p, y, settings.n_boot, settings.seed, settings.level, settings.progress
    )
    result = ToolResult(
        COMBINED_NAME,
        COMBINED_NAME,
        "higher",
        data.n,
        int(y.sum()),
        int((~y).sum()),
        1.0,
        area,
        low,
        high,
        ">= 0.5 (probability)",
        confusion(p >= 0.5, y),
        confusion(prediction.cv_called, y),
        prediction.fold_thresholds,
        "missing scores imputed with training-fold medians",
    )
    weights = {
        t.column: float(w) for t, w in zip(data.tools, prediction.full_model.weights, strict=True)
    }
    versus = None
    if best is not None:
        b = [t.column for t in data.tools].index(best)
        shared = ~np.isnan(data.scores[:, b])
        if min(int(y[shared].sum()), int((~y[shared]).sum())) >= 2:
            test = delong_test(p[shared], data.oriented(b)[shared], y[shared])
            versus = PairedComparison(
                COMBINED_NAME,
                best,
                test.n,
                test.auc_a,
                test.auc_b,
                test.difference,
                test.z,
                test.p_value,
                test.p_value,
                test.p_value < settings.alpha,
            )
    fpr, tpr = roc_curve(p, y)
    return result, weights, versus, Curve(COMBINED_NAME, fpr, tpr, area)


def evaluate_groups(data: Dataset, settings: Settings) -> list[Evaluation]:
    """The same comparison within each value of the group column (e.g. each gene)."""
    if data.groups is None:
        return []
    values = sorted(set(data.groups))
    out = []
    for value in values:
        mask = np.array([g == value for g in data.groups], dtype=bool)
        out.append(evaluate(data.subset(mask), settings, name=value))
    return out
