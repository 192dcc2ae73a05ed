"""report.json: every figure of the comparison, machine-readable (``SCHEMA_VERSION``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from node.variants.dataset import Dataset
from node.variants.evaluate import Evaluation, PairedComparison, Settings, ToolResult
from node.variants.report.common import RunInfo, verdict
from node.variants.thresholds import ToolSpec

SCHEMA_VERSION = 1


def _num(x: float | None) -> float | None:
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return float(x)


def _tool_json(t: ToolResult, evaluation: Evaluation, spec: ToolSpec | None) -> dict[str, Any]:
    return {
        "column": t.column,
        "tool": t.tool,
        "direction": t.direction,
        "n": t.n,
        "n_positive": t.n_pos,
        "n_negative": t.n_neg,
        "n_missing": evaluation.n - t.n,
        "coverage": _num(t.coverage),
        "auc": _num(t.auc),
        "auc_ci_low": _num(t.auc_ci_low),
        "auc_ci_high": _num(t.auc_ci_high),
        "published_threshold": None
        if t.published is None
        else {
            "rule": t.published_rule,
            "source": spec.source if spec else "",
            **t.published.as_dict(),
        },
        "cv_threshold": None
        if t.cv is None
        else {
            "fold_thresholds": [_num(x) for x in t.cv_thresholds],
            **t.cv.as_dict(),
        },
        "vs_best": verdict(evaluation, t.column) or None,
        "note": t.note,
    }


def _comparison_json(c: PairedComparison) -> dict[str, Any]:
    return {
        "best": c.best,
        "other": c.other,
        "n": c.n,
        "auc_best": _num(c.auc_best),
        "auc_other": _num(c.auc_other),
        "difference": _num(c.difference),
        "z": _num(c.z),
        "p_value": _num(c.p_value),
        "p_holm": _num(c.p_holm),
        "significant": c.significant,
    }


def evaluation_json(evaluation: Evaluation, data: Dataset) -> dict[str, Any]:
    specs = {s.column: s for s in data.tools}
    return {
        "name": evaluation.name,
        "n": evaluation.n,
        "n_positive": evaluation.n_pos,
        "n_negative": evaluation.n_neg,
        "tools": [_tool_json(t, evaluation, specs.get(t.column)) for t in evaluation.ranked()],
        "best": evaluation.best,
        "comparisons": [_comparison_json(c) for c in evaluation.comparisons],
        "combined": None
        if evaluation.combined is None
        else {
            **_tool_json(evaluation.combined, evaluation, None),
            "weights": evaluation.combined_weights,
            "vs_best": None
            if evaluation.combined_vs_best is None
            else _comparison_json(evaluation.combined_vs_best),
        },
        "not_computed": list(evaluation.skipped),
    }


def report_json(
    run: RunInfo,
    data: Dataset,
    overall: Evaluation,
    groups: Sequence[Evaluation],
    settings: Settings,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "command": run.command,
        "input": {
            "files": list(run.files),
            "truth_column": run.truth_column,
            "positive": run.positive,
            "negatives": list(data.negatives),
            "group_column": run.group_column,
            "n_rows": data.n_input,
            "n_analysed": overall.n,
        },
        "settings": {
            "folds": settings.folds,
            "bootstrap": settings.n_boot,
            "seed": settings.seed,
            "ci_level": settings.level,
            "cv_criterion": settings.criterion,
            "alpha": settings.alpha,
            "best_min_coverage": settings.best_min_coverage,
            "l2": settings.l2,
        },
        "excluded": [{"reason": e.reason, "count": e.count} for e in data.excluded],
        **{k: v for k, v in evaluation_json(overall, data).items() if k != "name"},
        "groups": {g.name: evaluation_json(g, data) for g in groups},
        "thresholds": [
            {
                "column": s.column,
                "tool": s.tool,
                "direction": s.direction,
                "rule": s.rule or None,
                "source": s.source,
                "note": s.note,
            }
            for s in data.tools
        ],
    }
