"""MODEL_CARD.md of an exam-aware (contralateral-difference) model, from its model.yaml.

Written by ``mammo-node train`` and rewritten by ``mammo-node evaluate --record`` (through
``node.training.card.write_card``), so the card always shows what model.yaml records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TASK_NAMES = {
    "abnormal_vs_normal": "abnormal vs normal",
    "malignant_vs_rest": "malignant vs rest",
    "mass_vs_normal": "mass vs normal",
}


def _f(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return "—" if value is None else str(value)


def _cv_rows(figures: dict[str, Any]) -> list[str]:
    rows = [
        "| task | AUC (mean of seeds) | per seed | 95 % CI | images (positive) |",
        "|---|---|---|---|---|",
    ]
    for key, name in TASK_NAMES.items():
        item = figures.get(key)
        if item:
            rows.append(
                f"| {name} | {_f(item['mean'])} | {', '.join(_f(v) for v in item['per_seed'])} "
                f"| {_f(item['ci95'])} | {item['images']} ({item['positives']}) |"
            )
    return rows


def _validation(ev: dict[str, Any]) -> list[str]:
    validation = ev.get("validation")
    lines = ["", "## Validation (patient-level held-out split, scored once)"]
    if not validation:
        return [*lines, "Not measured yet: run `mammo-node evaluate --record`."]
    figures = validation["figures"]
    lines += [
        f"Command: `{validation.get('command', '')}`",
        "",
        f"{validation['images']} images of {validation['patients']} women "
        f"({validation['positives']} abnormal), every breast scored against the other breast "
        "(the node's `predict_exam`). 95 % CIs: patient-level bootstrap for AUC, Wilson for "
        "proportions.",
        "",
        "| measure | value | 95 % CI |",
        "|---|---|---|",
    ]
    for name, item in figures.items():
        if isinstance(item, dict):
            lines.append(f"| {name} | {_f(item.get('value'))} | {_f(item.get('ci'))} |")
        else:
            lines.append(f"| {name} | {_f(item)} | |")
    base = validation.get("baseline")
    if base:
        lines += [
            "",
            f"Previous live model on the same images: `{base['model']}`, AUC {_f(base['auc'])} "
            f"{_f(base['ci'])}.",
        ]
    comparison = validation.get("comparison")
    if comparison:
        lines += [
            "",
            "### False positives and false negatives at the same sensitivity",
            f"Sensitivity {_f(comparison['sensitivity'])} (this model's operating point on these "
            f"{comparison['images']} images: {comparison['positives']} abnormal, "
            f"{comparison['negatives']} normal); the previous model thresholded to reach it on "
            "the same images; a coin flip calling that share of images positive as the simple "
            "baseline.",
            "",
            "| at the same sensitivity | false positives | false negatives |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {item['FP']} | {item['FN']} |"
            for name, item in comparison.items()
            if isinstance(item, dict)
        ]
    return lines


def render_contralateral_card(folder: Path) -> str:
    spec: dict[str, Any] = yaml.safe_load((folder / "model.yaml").read_text(encoding="utf-8"))
    ev = spec["evaluation"]
    trained, training = ev["trained_on"], ev["training"]
    cv = training["cross_validation"]
    cal = cv["calibration"]
    rows, cols = spec["input_size"]
    backbone = spec["backbone"]
    lines = [
        f"# {spec['name']} — `{spec['id']}` {spec['version']}",
        "",
        "**NOT FOR CLINICAL USE.** Trained on 150-odd digitised film images of a public research",
        "set; every figure below has a wide confidence interval and says nothing about",
        "performance in a screening population.",
        "",
        "## What it is",
        "Each breast is compared with the same woman's other breast of the same view:",
        "1. presentation pixels in [0, 1]; RIGHT breasts mirrored (chest wall left); a breast",
        "   mask (threshold, an opening that cuts film labels and markers, the largest component",
        "   on the chest-wall side, holes filled) zeroes everything else; the breast box is",
        f"   stretched to {rows}x{cols} (bilinear, antialiased);",
        f"2. frozen ImageNet `{backbone['name']}` (wheel `{backbone['wheel']}`, weight file",
        f"   sha256 `{backbone['sha256'][:16]}…`, checked at load), grey folded into the stem;",
        "3. image vector = masked mean and max of the stride-16 tap and masked max of the",
        "   stride-32 tap; exam vector = this breast's minus the other breast's;",
        f"4. standardise, PCA {spec['head']['pca']}, L2 logistic regression (C = {spec['head']['C']},",
        "   fixed), Platt scaling and operating point from patient-level out-of-fold logits;",
        *_heatmap_lines(spec),
        "",
        "When the other breast of the same view is missing, a separate **single-image fallback",
        "head** scores the image and the result says so (`compared: false`). That head is at",
        f"chance (in-train-split CV AUC {_f(cv['single_image_fallback']['abnormal_vs_normal']['mean'])});",
        "treat such a score as no information.",
        "",
        f"Operating point {spec['operating_point']} on the calibrated probability (for sensitivity "
        f"{training['operating_sensitivity']} on out-of-fold predictions).",
        "",
        "## Training data and licences",
        spec["training_data"],
        "",
        f"- dataset `{trained['dataset_id']}`, splits {trained['splits']}: {trained['images']} images "
        f"of {trained['patients']} women ({trained['positives']} abnormal); image list with pixel "
        "hashes in `training_images.csv`.",
        f"- Backbone weights: {training['backbone_licence']}.",
        f"- Licence: {spec['licence']}",
        f"- Head fitting and CV: {training['seconds']} s on {training['threads']} CPU threads, after the image "
        "vectors (cached in the run folder; extracting them is most of `make reference-model`).",
    ]
    if trained.get("citation"):
        lines.append(f"- Data citation: {trained['citation']}")
    lines += [
        "",
        "## How the recipe was chosen (optimistic)",
        training.get("selection") or "Not recorded.",
        "",
        f"## Cross-validation inside the train split ({cv['folds']} patient-level folds x "
        f"{len(cv['seeds'])} seeds, C fixed)",
        f"{cv['paired_images']} of {cv['images']} images have the other breast. CI: patient "
        "bootstrap of the seed-averaged out-of-fold logits.",
        "",
        *_cv_rows(cv["paired"]),
        "",
        "Single-image fallback head, same folds:",
        "",
        *_cv_rows(cv["single_image_fallback"]),
        "",
        "### Calibration (out-of-fold, Platt cross-fitted over women)",
        f"ECE {_f(cal['ece_platt_cross_fitted'])} (uncalibrated sigmoid {_f(cal['ece_uncalibrated_sigmoid'])}); "
        f"at the operating point sensitivity {_f(cal['sensitivity'])}, specificity "
        f"{_f(cal['specificity'])} ({cal['false_positives']} FP, {cal['false_negatives']} FN).",
        "",
        "| mean predicted | observed rate | images |",
        "|---|---|---|",
        *[f"| {p:.3f} | {o:.3f} | {n} |" for p, o, n in cal["reliability"]],
    ]
    lines += _lesion_section(cv.get("lesion_head"), training.get("research", ""))
    lines += _validation(ev)
    lines += [
        "",
        "## Limitations",
        "- mini-MIAS: digitised film, MLO views only, 200 µm pixels; calcifications are a few",
        "  pixels and are practically invisible to this model.",
        *(
            [
                "- The lesion head learnt from mini-MIAS circles (centre and radius), not outlines; it",
                "  finds masses and distortions far better than calcifications (see the per-class rows).",
                "- CC against MLO is not compared: mini-MIAS has MLO views only, so nothing about it",
                "  could be trained or measured here.",
                "- Without the other breast the lesion map subtracts the breast's own mean cell (not",
                "  measured here); it only places the fallback head's score.",
            ]
            if "lesion" in spec["head"]
            else [
                "- The heatmap is a class-activation map of an image-level head trained without lesion",
                "  outlines: it points at where this breast differs from the other, not at a delineated lesion.",
            ]
        ),
        "- The recipe was selected on all 214 mias-dev images, val split included: the validation",
        "  figures are not a clean hold-out; expect lower on new women and on digital mammograms.",
        "",
    ]
    return "\n".join(lines)


def _heatmap_lines(spec: dict[str, Any]) -> list[str]:
    lesion = spec["head"].get("lesion")
    if not lesion:
        return [
            "5. heatmap: the head's class-activation map per feature cell, mapped back to the source",
            "   pixels, zero outside the breast; findings are its peaks inside the breast only.",
        ]
    return [
        "5. lesion head: L2 logistic regression per stride-16 cell (that cell's stride-16",
        "   channels and its stride-32 parent's, minus the other breast's mean cell; L2",
        f"   {lesion['lambda']}), trained on the lesion circles; exam logit = step 4's logit +",
        f"   {lesion['beta']} x (this breast's lesion maximum - the other breast's), with its own",
        "   Platt scaling and operating point from out-of-fold logits;",
        "6. heatmap: per cell, the exam probability the image would have were that cell its lesion",
        "   maximum, mapped back to the source pixels, zero outside the breast; findings are its",
        "   peaks inside the breast only (no finding scores above the image's own score).",
    ]


AUC_ROWS = {
    "exam_head": "exam head alone (the 1.0.0 recipe)",
    "lesion_max_difference": "lesion maximum difference alone",
    "combined": "combined (served)",
}
LOCALISATION_ROWS = {
    "class_activation": "class-activation map of the exam head (1.0.0)",
    "lesion_head": "lesion head (served)",
}


def _lesion_section(cv: dict[str, Any] | None, research: str) -> list[str]:
    if not cv:
        return []
    auc = cv["auc"]
    tasks = list(auc["combined"])
    lines = [
        "",
        "## Lesion head: cross-validation inside the train split",
        f"Same patient-level folds and seeds as above, {cv['images']} images of {cv['patients']}"
        " women; each fold fits the exam head and the lesion head on the other folds' women.",
        "AUC (mean of seeds, 95 % CI: patient bootstrap of the seed-averaged logits):",
        "",
        "| score | " + " | ".join(t.replace("_", " ") for t in tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for key, name in AUC_ROWS.items():
        cells = [
            f"{_f(auc[key][t]['mean'])} {_f(auc[key][t]['ci95'])}" if t in auc[key] else "—"
            for t in tasks
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = ", ".join(
        f"{t.replace('_', ' ')} {auc['combined'][t]['positives']}/{auc['combined'][t]['images']}"
        for t in tasks
    )
    lines += [
        "",
        f"Positives/images per task: {counts}.",
        "Combined minus exam head, abnormal vs normal, paired patient bootstrap 95 % CI: "
        f"{_f(cv['combined_minus_exam_head_auc_ci95'])}.",
        "",
        "Localisation (out of fold; a finding hits within the stated radii of a lesion centre; "
        "FROC: lesion sensitivity at the stated false findings per image, at most 3 findings):",
        "",
    ]
    loc = cv["localisation"]
    keys = [k for k in loc["lesion_head"] if k.startswith(("top1", "froc"))]
    lines += ["| measure | " + " | ".join(LOCALISATION_ROWS.values()) + " |", "|---|---|---|"]
    for k in keys:
        values = []
        for name in LOCALISATION_ROWS:
            v = loc[name].get(k)
            values.append(f"{v[0]:.3f} (n={v[1]})" if isinstance(v, list) else _f(v))
        lines.append(f"| {k.replace('_', ' ')} | " + " | ".join(values) + " |")
    cal = cv.get("calibration")
    if cal:
        lines += [
            "",
            f"Combined score, calibration out of fold (Platt cross-fitted over women): ECE "
            f"{_f(cal['ece_platt_cross_fitted'])}; at its operating point sensitivity "
            f"{_f(cal['sensitivity'])}, specificity {_f(cal['specificity'])} "
            f"({cal['false_positives']} FP, {cal['false_negatives']} FN).",
        ]
    if research:
        lines += ["", "### Research record (lesion supervision)", research]
    return lines
