"""The ranked table as aligned plain text, for the terminal."""

from __future__ import annotations

from node.stats.roc import Confusion
from node.variants.evaluate import Evaluation
from node.variants.report.common import auc_text, confusion_text, direction_word, fmt, verdict


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
                auc_text(t),
                t.published_rule or "–",
                *_short(t.published),
                fmt(t.cv.mcc if t.cv else None),
                verdict(evaluation, t.column),
            ]
        )
    return rows


def _short(c: Confusion | None) -> list[str]:
    sens, spec, _, mcc = confusion_text(c)
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
        verdict = "" if vs is None else (f"{direction_word(vs)} vs best (p={vs.p_value:.2g})")
        rows.append(["--"] * len(_HEADER))
        rows.append(
            [
                "C",
                "combined (CV LR)",
                str(c.n),
                f"{c.coverage:.1%}",
                auc_text(c),
                ">= 0.5",
                *_short(c.published),
                fmt(c.cv.mcc if c.cv else None),
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
