"""What every form of the report shares: the run's description and how numbers read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from node.stats.roc import Confusion
from node.variants.evaluate import Evaluation, PairedComparison, ToolResult


@dataclass(frozen=True)
class RunInfo:
    """What was analysed, for the report header."""

    files: tuple[str, ...]
    truth_column: str
    positive: str
    group_column: str | None
    command: str


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{x + 0.0:.{digits}f}".replace("-0.000", "0.000")


def auc_text(t: ToolResult) -> str:
    if math.isnan(t.auc):
        return "–"
    return f"{t.auc:.3f} [{fmt(t.auc_ci_low)}, {fmt(t.auc_ci_high)}]"


def confusion_text(c: Confusion | None) -> tuple[str, str, str, str]:
    if c is None:
        return "–", "–", "–", "–"
    return fmt(c.sensitivity), fmt(c.specificity), fmt(c.accuracy), fmt(c.mcc)


def verdict(evaluation: Evaluation, column: str) -> str:
    if column == evaluation.best:
        return "best"
    for c in evaluation.comparisons:
        if c.other == column:
            return f"worse (p={c.p_holm:.2g})" if c.significant else f"tied (p={c.p_holm:.2g})"
    return ""


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def direction_word(c: PairedComparison) -> str:
    if not c.significant:
        return "tied"
    return "better" if c.difference > 0 else "worse"
