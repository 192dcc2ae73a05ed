"""report.md: the human report; every number in it is also in report.json."""

from __future__ import annotations

import math
from collections.abc import Sequence

from node.variants.dataset import Dataset
from node.variants.evaluate import Evaluation, PairedComparison, Settings, ToolResult
from node.variants.report.common import (
    RunInfo,
    auc_text,
    confusion_text,
    direction_word,
    fmt,
    md_table,
    verdict,
)
from node.variants.thresholds import ToolSpec


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
                auc_text(t),
                t.published_rule or "–",
                *confusion_text(t.published),
                cv_t,
                *confusion_text(t.cv),
                verdict(evaluation, t.column),
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
        md_table(_TOOL_HEADER, _tool_rows(overall.ranked(), overall)),
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
        parts += ["", md_table(_TOOL_HEADER, _tool_rows(g.ranked(), g)), ""]
        parts += _best_section(g, settings)
        parts += _combined_section(g)
    parts += [
        "## Thresholds and directions used",
        "",
        md_table(
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
        md_table(
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
        fmt(c.auc_best),
        fmt(c.auc_other),
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
        md_table(_TOOL_HEADER, _tool_rows([c], evaluation)),
        "",
    ]
    vs = evaluation.combined_vs_best
    if vs is not None:
        lines += [
            f"Combined vs best single tool `{vs.other}` on {vs.n} variants: "
            f"AUC {vs.auc_best:.3f} vs {vs.auc_other:.3f}, Δ {vs.difference:+.3f}, "
            f"DeLong p = {vs.p_value:.2g} ({direction_word(vs)}).",
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
