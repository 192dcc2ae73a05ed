"""roc.png: ROC curves, one panel per evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt

from node.variants.evaluate import Evaluation


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
