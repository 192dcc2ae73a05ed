"""Writing the comparison: a console table, Markdown, report.json and a ROC plot (PNG).

One module per form: ``console``, ``markdown``, ``json_report``, ``plot``; ``common`` holds
the run's description and the number formats they share.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from node.variants.dataset import Dataset
from node.variants.evaluate import Evaluation, Settings
from node.variants.report.common import RunInfo
from node.variants.report.console import console_table
from node.variants.report.json_report import SCHEMA_VERSION, report_json
from node.variants.report.markdown import markdown
from node.variants.report.plot import roc_plot

__all__ = ["SCHEMA_VERSION", "RunInfo", "console_table", "write_report"]


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
