"""Turn scored images into figures, plots (ROC, FROC, calibration, errors) and a report.

Writes ``report.json`` (everything), ``report.md`` (what a reader needs), ``roc.png``,
``froc.png``, ``calibration.png`` and ``errors.png`` (the model's false negatives and false
positives at its operating point, with the baseline's call on the same image).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle

from node.dicom.pixels import read_image_file
from node.evaluation.calibration import reliability
from node.evaluation.froc import FP_RATES, FrocCurve, froc
from node.evaluation.run import ScoredModel
from node.stats.intervals import at_threshold, auc_with_ci
from node.stats.roc import roc_curve

TASKS = {
    "abnormal_vs_normal": ("benign", "malignant"),
    "malignant_vs_rest": ("malignant",),
}
# masses (mini-MIAS classes, CBIS-DDSM's "mass") against normal images, the other lesions left out
MASSES = ("CIRC", "SPIC", "MISC", "MASS")


def _mass_vs_normal(model: ScoredModel, n_boot: int, seed: int) -> dict[str, Any] | None:
    chosen = [
        s
        for s in model.scores
        if s.record.label == "normal" or s.record.abnormality.upper() in MASSES
    ]
    labels = np.array([s.record.label != "normal" for s in chosen], dtype=bool)
    if not labels.any() or labels.all():
        return None
    scores = np.array([s.score for s in chosen], dtype=np.float64)
    return auc_with_ci(scores, labels, [s.record.patient_id for s in chosen], n_boot, seed)


def _arrays(model: ScoredModel, positive: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.array([s.score for s in model.scores], dtype=np.float64)
    labels = np.array([s.record.label in positive for s in model.scores], dtype=bool)
    return scores, labels


def positive_labels(model: ScoredModel) -> tuple[str, ...]:
    return tuple(model.trained_on.get("positive_labels") or TASKS["abnormal_vs_normal"])


def _froc(model: ScoredModel, hit_factor: float) -> FrocCurve:
    positive = positive_labels(model)
    usable = [s for s in model.scores if s.record.label not in positive or s.record.lesions]
    return froc(
        [s.findings for s in usable],
        [s.record.lesions if s.record.label in positive else () for s in usable],
        hit_factor,
    )


def summarise(
    model: ScoredModel,
    thresholds: Sequence[float],
    n_boot: int,
    seed: int,
    hit_factors: Sequence[float],
) -> dict[str, Any]:
    """All figures of one model on one split."""
    patients = [s.record.patient_id for s in model.scores]
    positive = positive_labels(model)
    scores, labels = _arrays(model, positive)
    op = model.folder.spec.operating_point
    points = sorted({op, *thresholds})
    tasks = {
        name: auc_with_ci(*_arrays(model, labels_of), patients, n_boot, seed)
        for name, labels_of in TASKS.items()
    }
    mass = _mass_vs_normal(model, n_boot, seed)
    if mass is not None:
        tasks["mass_vs_normal"] = mass
    cal = reliability(scores, labels)
    frocs = {}
    for factor in hit_factors:
        curve = _froc(model, factor)
        frocs[f"{factor:g}x_radius"] = {
            "lesions": curve.lesions,
            "images": curve.images,
            "sensitivity_at_fp_per_image": {f"{r:g}": curve.sensitivity_at(r) for r in FP_RATES},
        }
    return {
        "model": model.folder.spec.ref,
        "positive_labels": list(positive),
        "images": len(model.scores),
        "patients": len(set(patients)),
        "positives": int(labels.sum()),
        "auc": auc_with_ci(scores, labels, patients, n_boot, seed),
        "auc_by_task": tasks,
        "operating_point": op,
        "at_threshold": [
            at_threshold(scores, labels, t) | {"model_operating_point": t == op} for t in points
        ],
        "calibration": cal.__dict__,
        "froc": frocs,
    }


def errors(model: ScoredModel, baseline: ScoredModel | None) -> list[dict[str, Any]]:
    """Images either model gets wrong at its operating point, side by side."""
    positive = positive_labels(model)
    other = {s.record.image_id: s for s in baseline.scores} if baseline else {}
    rows = []
    for s in model.scores:
        truth = s.record.label in positive
        call = s.score >= model.folder.spec.operating_point
        b = other.get(s.record.image_id)
        b_call = (
            None
            if b is None or baseline is None
            else b.score >= baseline.folder.spec.operating_point
        )
        if call != truth or (b_call is not None and b_call != truth):
            rows.append(
                {
                    "image_id": s.record.image_id,
                    "label": s.record.label,
                    "abnormality": s.record.abnormality,
                    "model_score": round(s.score, 4),
                    "model_error": "" if call == truth else ("FN" if truth else "FP"),
                    "baseline_score": None if b is None else round(b.score, 4),
                    "baseline_error": ""
                    if b_call is None or b_call == truth
                    else ("FN" if truth else "FP"),
                }
            )
    return rows


def plot_roc(models: Sequence[ScoredModel], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    for model in models:
        scores, labels = _arrays(model, positive_labels(model))
        fpr, tpr = roc_curve(scores, labels)
        (line,) = ax.plot(fpr, tpr, label=model.ref)
        op = model.folder.spec.operating_point
        ax.plot(
            [(scores[~labels] >= op).mean()],
            [(scores[labels] >= op).mean()],
            "o",
            color=line.get_color(),
        )
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC (dots: operating points)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_froc(models: Sequence[ScoredModel], path: Path, hit_factors: Sequence[float]) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 4.5))
    for model in models:
        for factor in hit_factors:
            curve = _froc(model, factor)
            ax.step(
                curve.fp_per_image,
                curve.sensitivity,
                where="post",
                label=f"{model.ref} (hit ≤ {factor:g}r)",
            )
    ax.set_xscale("symlog", linthresh=0.125)
    ax.set_xlim(0, 8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("lesion sensitivity")
    ax.set_title("FROC")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_calibration(models: Sequence[ScoredModel], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    for model in models:
        scores, labels = _arrays(model, positive_labels(model))
        cal = reliability(scores, labels)
        xs = [m for m in cal.mean_score if m is not None]
        ys = [o for o in cal.observed if o is not None]
        ax.plot(xs, ys, "o-", label=f"{model.ref} (ECE {cal.ece:.3f})")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed fraction positive")
    ax.set_title("Reliability")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_errors(
    model: ScoredModel, rows: list[dict[str, Any]], dataset: Path, path: Path, limit: int = 12
) -> None:
    """Thumbnails of the model's errors: truth circles green, its findings red."""
    wrong = sorted((r for r in rows if r["model_error"]), key=lambda r: r["model_error"] != "FN")[
        :limit
    ]
    by_id = {s.record.image_id: s for s in model.scores}
    cols = 4
    n_rows = max(1, (len(wrong) + cols - 1) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3 * cols, 3.2 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, wrong, strict=False):
        s = by_id[row["image_id"]]
        pixels, _ = read_image_file(dataset / s.record.path)
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=1)
        for lesion in s.record.lesions:
            ax.add_patch(
                Circle((lesion.column, lesion.row), lesion.radius, fill=False, color="lime")
            )
        for f in s.findings:
            if f.score >= model.folder.spec.finding_threshold:
                ax.plot(f.column, f.row, "r+", markersize=10)
        b = (
            f"; base {row['baseline_score']}{' ' + row['baseline_error'] if row['baseline_error'] else ''}"
            if row["baseline_score"] is not None
            else ""
        )
        ax.set_title(
            f"{row['image_id']} {row['model_error']} {row['label']}\nscore {row['model_score']}{b}",
            fontsize=8,
        )
    if not wrong:
        axes.flat[0].text(0.5, 0.5, "no errors at the operating point", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _ci(item: dict[str, Any]) -> str:
    if item.get("value") is None:
        return "n/a"
    ci = item.get("ci")
    return f"{item['value']:.3f} ({ci[0]:.3f}–{ci[1]:.3f})" if ci else f"{item['value']:.3f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Evaluation of `{report['model']['model']}` on `{report['dataset']}` split `{report['split']}`",
        "",
        "NOT FOR CLINICAL USE. 95 % CIs: AUC by patient-level bootstrap "
        f"({report['bootstrap']} resamples), proportions by Wilson score intervals.",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    entries = [("model", report["model"])] + (
        [("baseline", report["baseline"])] if report.get("baseline") else []
    )
    lines += [
        "| | " + " | ".join(f"{k} `{v['model']}`" for k, v in entries) + " |",
        "|---" * (len(entries) + 1) + "|",
    ]
    lines.append(
        "| images / patients / positives | "
        + " | ".join(f"{v['images']} / {v['patients']} / {v['positives']}" for _, v in entries)
        + " |"
    )
    lines.append(
        "| positive class | "
        + " | ".join(" + ".join(v["positive_labels"]) for _, v in entries)
        + " |"
    )
    lines.append("| AUC (own task) | " + " | ".join(_ci(v["auc"]) for _, v in entries) + " |")
    for task in TASKS:
        lines.append(
            f"| AUC {task} | " + " | ".join(_ci(v["auc_by_task"][task]) for _, v in entries) + " |"
        )
    lines.append(
        "| ECE / Brier | "
        + " | ".join(
            f"{v['calibration']['ece']:.3f} / {v['calibration']['brier']:.3f}" for _, v in entries
        )
        + " |"
    )
    for name, summary in entries:
        lines += [
            "",
            f"## {name} `{summary['model']}` at its thresholds",
            "",
            "| threshold | TP FP TN FN | sensitivity | specificity | accuracy | PPV | NPV |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in summary["at_threshold"]:
            mark = " (operating point)" if t["model_operating_point"] else ""
            lines.append(
                f"| {t['threshold']:.3f}{mark} | {t['tp']} {t['fp']} {t['tn']} {t['fn']} | "
                + " | ".join(
                    _ci(t[k]) for k in ("sensitivity", "specificity", "accuracy", "ppv", "npv")
                )
                + " |"
            )
        lines += ["", "FROC (lesion sensitivity at false positives per image):", ""]
        for key, item in summary["froc"].items():
            pairs = ", ".join(
                f"{fp}: {s:.2f}" for fp, s in item["sensitivity_at_fp_per_image"].items()
            )
            lines.append(
                f"- hit within {key} ({item['lesions']} lesions, {item['images']} images): {pairs}"
            )
    lines += ["", "## Errors at the operating points (model vs baseline)", ""]
    if report["errors"]:
        lines += [
            "| image | label | abnormality | model score | model | baseline score | baseline |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in report["errors"]:
            lines.append(
                f"| {r['image_id']} | {r['label']} | {r['abnormality']} | {r['model_score']} | {r['model_error']} | {r['baseline_score']} | {r['baseline_error']} |"
            )
    else:
        lines.append("None.")
    lines += ["", "Plots: `roc.png`, `froc.png`, `calibration.png`, `errors.png`.", ""]
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
