"""Lesion-head cell labels from outlines, side by side with circles, on the same CV folds.

Why: outlined lesions (CBIS-DDSM ROI masks) need a rule for which feature cells are lesion.
The only located lesions here are mini-MIAS circles, so each circle is drawn as an outline
(a filled disc in a lesion mask) and the lesion head's patient-level CV inside the train split
(``node.training.lesion_cv``, the figures ``make reference-model`` reports) runs three times:
circles (the centre-inside rule), outlines with the served rule (cell centre inside the
outline), and outlines with every touched cell positive. A disc should give the circle's
figures under the served rule; the difference shows what the rule itself costs or gains.

    .venv/bin/python bench/lesion_outline_rule.py --dataset var/datasets/mias-dev \\
        --run-dir var/bench/outline-rule

Feature maps are cached in ``--run-dir`` (the backbone runs once, about 1-2 s per image).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from node.datasets.manifest import ImageRecord, read_manifest
from node.inference.contralateral import image_vector
from node.training.contralateral import partners
from node.training.lesion import CellData, extract
from node.training.lesion_cv import cross_validate_lesion


def discs(records: list[ImageRecord], cells: CellData) -> list[npt.NDArray[np.uint8] | None]:
    """Each image's circles drawn as a lesion mask (k inside the k-th circle)."""
    masks: list[npt.NDArray[np.uint8] | None] = []
    for record, prepared in zip(records, cells.prepared, strict=True):
        if not record.lesions:
            masks.append(None)
            continue
        rows, cols = np.ogrid[: prepared.source_shape[0], : prepared.source_shape[1]]
        mask = np.zeros(prepared.source_shape, np.uint8)
        for k, lesion in enumerate(record.lesions, start=1):
            mask[(rows - lesion.row) ** 2 + (cols - lesion.column) ** 2 <= lesion.radius**2] = k
        masks.append(mask)
    return masks


def summary(figures: dict[str, Any]) -> dict[str, Any]:
    auc = figures["auc"]
    found = figures["localisation"]["lesion_head"]
    return {
        "combined_auc": [auc["combined"]["abnormal_vs_normal"][k] for k in ("mean", "ci95")],
        "lesion_max_difference_auc": auc["lesion_max_difference"]["abnormal_vs_normal"]["mean"],
        "malignant_vs_rest": auc["combined"]["malignant_vs_rest"]["mean"],
        "top1_within_1.5_radii": found["top1_within_1.5_radii"],
        "froc_1.5x_at_1_fp": found["froc_sensitivity_1.5x_radius_at_1_fp_per_image"],
        "froc_1x_at_1_fp": found["froc_sensitivity_1x_radius_at_1_fp_per_image"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="imported mini-MIAS dataset")
    parser.add_argument("--split", default="train", help="split to cross-validate in")
    parser.add_argument("--run-dir", type=Path, required=True, help="feature-map cache folder")
    parser.add_argument("--folds", type=int, default=5, help="patient-level folds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="CV seeds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = [
        r for r in read_manifest(args.dataset) if r.split == args.split and r.label != "unknown"
    ]
    cells = extract(args.dataset, records, "efficientnet-lite0", (768, 512), args.run_dir)
    vectors = np.stack([image_vector(f) for f in cells.feats])
    pair = partners(records)
    cv_args = (
        (vectors - vectors[pair]).astype(np.float64),
        np.array([r.label != "normal" for r in records]),
        np.array([r.label == "malignant" for r in records]),
        [r.abnormality for r in records],
        [r.patient_id for r in records],
        pair,
        0.003,  # the served recipe: C, PCA size, lesion L2
        32,
        0.01,
        args.folds,
        args.seeds,
    )
    outlines = replace(cells, masks=discs(records, cells))
    arms = (("circles", cells, False), ("outlines", outlines, False), ("touched", outlines, True))
    for name, data, overlap in arms:
        figures, _, _ = cross_validate_lesion(data, *cv_args, overlap=overlap)
        print(name, json.dumps(summary(figures)), flush=True)


if __name__ == "__main__":
    main()
