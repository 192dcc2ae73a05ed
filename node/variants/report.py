"""Writing the comparison: a console table, Markdown, report.json and a ROC plot (PNG)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt

from node.stats.roc import Confusion
from node.variants.dataset import Dataset
from node.variants.evaluate import (
    Evaluation,
    PairedComparison,
    Settings,
    ToolResult,
)
from node.variants.thresholds import ToolSpec

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunInfo:
    """What was analysed, for the report header."""

    files: tuple[str, ...]
    truth_column: str
    positive: str
    group_column: str | None
    command: str


# ---------------------------------------------------------------- console / Markdown table


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{x + 0.0:.{digits}f}".replace("-0.000", "0.000")


def _auc_text(t: ToolResult) -> str:
    if math.isnan(t.auc):
        return "–"
    return f"{t.auc:.3f} [{_fmt(t.auc_ci_low)}, {_fmt(t.auc_ci_high)}]"


def _confusion_text(c: Confusion | None) -> tuple[str, str, str, str]:
    if c is None:
        return "–", "–", "–", "–"
    return _fmt(c.sensitivity), _fmt(c.specificity), _fmt(c.accuracy), _fmt(c.mcc)


def _verdict(evaluation: Evaluation, column: str) -> str:
    if column == evaluation.best:
        return "best"
    for c in evaluation.comparisons:
        if c.other == column:
            return f"worse (p={c.p_holm:.2g})" if c.significant else f"tied (p={c.p_holm:.2g})"
    return ""


def ranked_rows(evaluation: Evaluation) -> list[list[str]]:
    """One row per tool, best AUC first, then the combined predictor after a separator."""
    rows = []
    for rank, t in enumerate(evaluation.ranked(), start=1):
        rows.append(
            [
                str(rank),
                t.tool,
                str(t.n),
                f"{t.coverage:.1%}",
                _auc_text(t),
                t.published_rule or "–",
                *_short(t.published),
                _fmt(t.cv.mcc if t.cv else None),
                _verdict(evaluation, t.column),
            ]
        )
    return rows


def _short(c: Confusion | None) -> list[str]:
    sens, spec, _, mcc = _confusion_text(c)
    return [sens, spec, mcc]


_HEADER = [
    "#",
    "tool",
    "n",
    "coverage",
    "AUC [95% CI]",
    "published rule",
    "sens@pub",
    "spec@pub",
    "MCC@pub",
    "MCC@CV",
    "vs best (DeLong, Holm)",
]


def console_table(evaluation: Evaluation) -> str:
    """The ranked table as aligned plain text, combined predictor apart at the bottom."""
    rows = [_HEADER, *ranked_rows(evaluation)]
    if evaluation.combined is not None:
        c = evaluation.combined
        vs = evaluation.combined_vs_best
        verdict = "" if vs is None else (f"{_direction_word(vs)} vs best (p={vs.p_value:.2g})")
        rows.append(["--"] * len(_HEADER))
        rows.append(
            [
                "C",
                "combined (CV LR)",
                str(c.n),
                f"{c.coverage:.1%}",
                _auc_text(c),
                ">= 0.5",
                *_short(c.published),
                _fmt(c.cv.mcc if c.cv else None),
                verdict,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]
    lines = []
    for r in rows:
        if r[0] == "--":
            lines.append("  ".join("-" * w for w in widths))
        else:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
    title = (
        f"{evaluation.name}: {evaluation.n} variants "
        f"({evaluation.n_pos} positive, {evaluation.n_neg} negative)"
    )
    return title + "\n" + "\n".join(lines)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _direction_word(c: PairedComparison) -> str:
    if not c.significant:
        return "tied"
    return "better" if c.difference > 0 else "worse"


def _tool_rows(tools: Sequence[ToolResult], evaluation: Evaluation) -> list[list[str]]:
    rows = []
    for t in tools:
        cv_t = _threshold_summary(t)
        rows.append(
            [
                t.tool,
                f"`{t.column}`",
                t.direction,
                str(t.n),
                f"{t.coverage:.1%}",
                _auc_text(t),
                t.published_rule or "–",
                *_confusion_text(t.published),
                cv_t,
                *_confusion_text(t.cv),
                _verdict(evaluation, t.column),
            ]
        )
    return rows


def _threshold_summary(t: ToolResult) -> str:
    finite = sorted(x for x in t.cv_thresholds if math.isfinite(x))
    if not t.cv_thresholds:
        return "–"
    if not finite:
        return "none/all"
    sign = "<=" if t.direction == "lower" else ">="
    median = finite[len(finite) // 2]
    return f"{sign} {median:.4g} ({finite[0]:.4g}–{finite[-1]:.4g})"


_TOOL_HEADER = [
    "tool",
    "column",
    "damaging if",
    "n",
    "coverage",
    "AUC [95% CI]",
    "published rule",
    "sens",
    "spec",
    "acc",
    "MCC",
    "CV threshold (median, range)",
    "sens",
    "spec",
    "acc",
    "MCC",
    "vs best",
]


def markdown(
    run: RunInfo,
    data: Dataset,
    overall: Evaluation,
    groups: Sequence[Evaluation],
    settings: Settings,
) -> str:
    """The human report; every number in it is also in report.json."""
    parts = [
        "# In-silico predictor comparison",
        "",
        f"Command: `{run.command}`",
        "",
        f"Input: {', '.join(run.files)}; truth column `{run.truth_column}`, positive "
        f"`{run.positive}`, negative {', '.join(f'`{v}`' for v in data.negatives)}.",
        f"{data.n_input} rows read, {overall.n} analysed "
        f"({overall.n_pos} positive, {overall.n_neg} negative).",
        "",
        "## Excluded",
        "",
    ]
    parts += _exclusion_lines(data, overall)
    parts += [
        "",
        "## Single tools (all variants)",
        "",
        "Ranked by AUC. `vs best`: DeLong test of the best tool against this one on the "
        "variants both score, Holm-adjusted over all comparisons; *tied* means the "
        f"difference is not significant at α = {settings.alpha}.",
        "",
        _md_table(_TOOL_HEADER, _tool_rows(overall.ranked(), overall)),
        "",
    ]
    parts += _best_section(overall, settings)
    parts += _combined_section(overall)
    for g in groups:
        parts += [
            f"## {run.group_column} = {g.name}",
            "",
            f"{g.n} variants ({g.n_pos} positive, {g.n_neg} negative).",
            "",
        ]
        parts += [f"- not computed: {s}" for s in g.skipped]
        parts += ["", _md_table(_TOOL_HEADER, _tool_rows(g.ranked(), g)), ""]
        parts += _best_section(g, settings)
        parts += _combined_section(g)
    parts += [
        "## Thresholds and directions used",
        "",
        _md_table(
            ["column", "tool", "damaging if", "published rule", "source", "note"],
            [_spec_row(s) for s in data.tools],
        ),
        "",
    ]
    parts += _methods(settings)
    return "\n".join(parts) + "\n"


def _exclusion_lines(data: Dataset, overall: Evaluation) -> list[str]:
    lines = [f"- {e.count} rows: {e.reason}" for e in data.excluded]
    if not lines:
        lines.append("- no rows left out for their truth value")
    for t in overall.tools:
        missing = overall.n - t.n
        if missing:
            lines.append(
                f"- `{t.column}`: {missing} of {overall.n} variants have no score "
                "(left out of that tool's metrics; imputed for the combined predictor)"
            )
    return lines


def _best_section(evaluation: Evaluation, settings: Settings) -> list[str]:
    if evaluation.best is None:
        return [
            f"No best tool: no tool has an AUC with coverage ≥ {settings.best_min_coverage:.0%}.",
            "",
        ]
    tied = [c.other for c in evaluation.comparisons if not c.significant]
    worse = [c.other for c in evaluation.comparisons if c.significant]
    lines = [
        f"**Best single tool: `{evaluation.best}`** (highest AUC among tools scoring ≥ "
        f"{settings.best_min_coverage:.0%} of variants). It is significantly better than "
        f"{len(worse)} tool(s); not distinguishable from: "
        f"{', '.join(f'`{t}`' for t in tied) or 'none'}.",
        "",
        _md_table(
            [
                "best",
                "other",
                "n shared",
                "AUC best",
                "AUC other",
                "Δ",
                "z",
                "p",
                "p (Holm)",
                "significant",
            ],
            [
                _comparison_row(c)
                for c in sorted(evaluation.comparisons, key=lambda c: -c.auc_other)
            ],
        ),
        "",
    ]
    return lines


def _comparison_row(c: PairedComparison) -> list[str]:
    return [
        c.best,
        c.other,
        str(c.n),
        _fmt(c.auc_best),
        _fmt(c.auc_other),
        f"{c.difference:+.3f}",
        f"{c.z:.2f}",
        f"{c.p_value:.2g}",
        f"{c.p_holm:.2g}",
        "yes" if c.significant else "no",
    ]


def _combined_section(evaluation: Evaluation) -> list[str]:
    c = evaluation.combined
    if c is None:
        return []
    lines = [
        f"### Combined predictor — {evaluation.name} (kept apart from the single tools)",
        "",
        "L2 logistic regression over all tools' oriented scores; every fold's medians, "
        "scaling, weights and CV threshold come from its training folds only, and the "
        "numbers below are pooled over held-out folds.",
        "",
        _md_table(_TOOL_HEADER, _tool_rows([c], evaluation)),
        "",
    ]
    vs = evaluation.combined_vs_best
    if vs is not None:
        lines += [
            f"Combined vs best single tool `{vs.other}` on {vs.n} variants: "
            f"AUC {vs.auc_best:.3f} vs {vs.auc_other:.3f}, Δ {vs.difference:+.3f}, "
            f"DeLong p = {vs.p_value:.2g} ({_direction_word(vs)}).",
            "",
        ]
    top = sorted(evaluation.combined_weights.items(), key=lambda kv: -abs(kv[1]))[:8]
    lines += [
        "Largest standardised weights (model fitted on all variants, for reading only): "
        + ", ".join(f"`{k}` {v:+.2f}" for k, v in top),
        "",
    ]
    return lines


def _spec_row(s: ToolSpec) -> list[str]:
    return [
        f"`{s.column}`",
        s.tool,
        f"{s.direction} score",
        s.rule or "–",
        s.source or "–",
        s.note or "",
    ]


def _methods(settings: Settings) -> list[str]:
    return [
        "## Methods",
        "",
        "- AUC: Mann-Whitney with mid-ranks for ties, on the variants the tool scores; "
        f"{settings.level:.0%} CI: percentile bootstrap ({settings.n_boot} replicates, "
        f"resampling positives and negatives separately, seed {settings.seed}).",
        "- Published threshold: the built-in table above (dbNSFP README and the tools' papers).",
        f"- CV threshold: {settings.folds}-fold stratified CV (seed {settings.seed}); each "
        f"fold's threshold maximises {settings.criterion.upper()} on the other folds and is "
        "applied to the fold; metrics are pooled over the held-out folds.",
        "- Paired comparison: DeLong test for correlated AUCs (fast algorithm, Sun & Xu 2014) "
        "on variants scored by both tools, Holm-adjusted. The best tool is chosen on the same "
        "data, so its lead over tied tools should not be over-read.",
        f"- Combined predictor: L2 logistic regression (λ = {settings.l2}), median imputation "
        "and standardisation learned on training folds only.",
        "- MCC is reported as 0 when all variants are called one way (undefined otherwise).",
    ]


# ---------------------------------------------------------------- JSON


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
        "vs_best": _verdict(evaluation, t.column) or None,
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


# ---------------------------------------------------------------- ROC plot


def roc_plot(path: Path, evaluations: Sequence[Evaluation]) -> None:
    """One panel per evaluation (all variants, then each gene); combined drawn bold."""
    panels = [e for e in evaluations if e.curves]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6.5), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax, evaluation in zip(axes[0], panels, strict=True):
        curves = sorted(evaluation.curves, key=lambda c: -c.auc)
        for i, curve in enumerate(curves):
            combined = evaluation.combined is not None and curve.label == evaluation.combined.column
            ax.plot(
                curve.fpr,
                curve.tpr,
                color="black" if combined else cmap(i % 20),
                linewidth=2.5 if combined else 1.0,
                linestyle="--" if combined else "-",
                label=f"{'combined (CV)' if combined else curve.label} {curve.auc:.3f}",
            )
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
        ax.set_xlabel("1 − specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title(f"{evaluation.name} (n={evaluation.n}, {evaluation.n_pos} positive)")
        ax.set_aspect("equal")
        ax.legend(fontsize=6, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    out: Path,
    run: RunInfo,
    data: Dataset,
    overall: Evaluation,
    groups: Sequence[Evaluation],
    settings: Settings,
) -> dict[str, Path]:
    """Write report.md, report.json and roc.png into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "json": out / "report.json", "roc": out / "roc.png"}
    paths["markdown"].write_text(markdown(run, data, overall, groups, settings), encoding="utf-8")
    paths["json"].write_text(
        json.dumps(report_json(run, data, overall, groups, settings), indent=2, allow_nan=False)
        + "\n",
        encoding="utf-8",
    )
    roc_plot(paths["roc"], [overall, *groups])
    return paths
