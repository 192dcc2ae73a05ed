"""``data report``: what a dataset holds, in numbers and one picture, with imbalance warnings.

Reading the counts before training tells you whether a validation AUC can mean anything
(a split with five positives cannot) and which classes the model barely sees.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from node.datasets.manifest import ImageRecord, read_dataset_info, read_manifest, read_rejected

FACETS = ("label", "abnormality", "density", "density_acr", "laterality", "view", "split")
IMBALANCE_RATIO = 0.5  # rarest / commonest label below this -> warn
MIN_PER_SPLIT = 10  # fewer images of a label in a split -> warn


def _facet(record: ImageRecord, name: str) -> str:
    value = str(getattr(record, name))
    return value or "-"


def summarise(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """Counts per facet and per split x label, plus the warnings they imply."""
    counts = {
        name: dict(sorted(Counter(_facet(r, name) for r in records).items())) for name in FACETS
    }
    by_split: dict[str, dict[str, int]] = {}
    for split in sorted({r.split for r in records}):
        subset = [r for r in records if r.split == split]
        by_split[split or "-"] = dict(sorted(Counter(r.label for r in subset).items()))
        by_split[split or "-"]["patients"] = len({r.patient_id for r in subset})
    lesions = sum(len(r.lesions) for r in records)
    image_level_only = sum(1 for r in records if r.is_abnormal and not r.lesions)
    warnings = []
    labelled = Counter(r.label for r in records if r.label != "unknown")
    if labelled:
        rarest, commonest = min(labelled.values()), max(labelled.values())
        if rarest / commonest < IMBALANCE_RATIO:
            warnings.append(
                f"label imbalance: {dict(labelled)} (rarest/commonest {rarest / commonest:.2f}); "
                "train with class balancing and read AUC, not accuracy"
            )
    for split, table in by_split.items():
        for label in ("normal", "benign", "malignant"):
            if 0 < labelled.get(label, 0) and table.get(label, 0) < MIN_PER_SPLIT:
                warnings.append(
                    f"split {split}: only {table.get(label, 0)} {label} images; "
                    "figures on it have wide confidence intervals"
                )
    if image_level_only:
        warnings.append(
            f"{image_level_only} abnormal images have no lesion coordinates (image-level only)"
        )
    return {
        "images": len(records),
        "patients": len({r.patient_id for r in records}),
        "lesions": lesions,
        "outlined_images": sum(1 for r in records if r.mask),  # with a lesion mask (ROI)
        "counts": counts,
        "by_split": by_split,
        "warnings": warnings,
    }


def plot(summary: dict[str, Any], path: Path, title: str) -> None:
    """One bar chart per facet, on one PNG."""
    facets = [f for f in FACETS if any(k != "-" for k in summary["counts"][f])]
    cols = 3
    rows = (len(facets) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, facets, strict=False):
        items = summary["counts"][name]
        ax.bar(range(len(items)), list(items.values()), color="#4c72b0")
        ax.set_xticks(range(len(items)), list(items), rotation=30, ha="right", fontsize=8)
        ax.set_title(name)
        for i, value in enumerate(items.values()):
            ax.annotate(str(value), (i, value), ha="center", va="bottom", fontsize=8)
    for ax in list(axes.flat)[len(facets) :]:
        ax.axis("off")
    fig.suptitle(f"{title}: {summary['images']} images, {summary['patients']} patients")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(dataset: Path, out: Path | None = None) -> dict[str, Any]:
    """Write report.json and report.png (default: into the dataset folder); return the summary."""
    out = out or dataset
    out.mkdir(parents=True, exist_ok=True)
    info = read_dataset_info(dataset)
    summary = summarise(read_manifest(dataset))
    rejected = Counter(r.reason for r in read_rejected(dataset))
    summary["dataset_id"] = info["id"]
    summary["rejected"] = dict(sorted(rejected.items()))
    (out / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    plot(summary, out / "report.png", info["id"])
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Plain-text table for the terminal."""
    lines = [
        f"dataset {summary.get('dataset_id', '?')}: {summary['images']} images, "
        f"{summary['patients']} patients, {summary['lesions']} located lesions"
        + (
            f" ({summary['outlined_images']} images with lesion masks)"
            if summary.get("outlined_images")
            else ""
        )
    ]
    for name, items in summary["counts"].items():
        lines.append(f"  {name:12s} " + ", ".join(f"{k}: {v}" for k, v in items.items()))
    for split, table in summary["by_split"].items():
        lines.append(f"  split {split:6s} " + ", ".join(f"{k}: {v}" for k, v in table.items()))
    if summary.get("rejected"):
        lines.append(
            "  rejected     " + ", ".join(f"{k}: {v}" for k, v in summary["rejected"].items())
        )
    lines.extend(f"WARNING: {w}" for w in summary["warnings"])
    return "\n".join(lines)
