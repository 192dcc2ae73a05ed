"""Patient-level cross-validation inside the training splits, for choosing a recipe.

The validation split is for the one final measurement of the chosen model; choosing between
recipes by their validation figures would spend it. Instead each recipe is trained K times,
each time with one fold of WOMEN held out of the train split and scored on it: a woman's two
breasts (mini-MIAS: mdbNNN odd = right, the next even number = her left) are correlated, so
they always fall in the same fold.

Folds are stratified: women with an abnormal image are dealt round-robin over the folds
separately from the others, after a seeded shuffle, so every fold has positives.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from node.datasets.manifest import ImageRecord
from node.errors import TrainingError
from node.stats.intervals import patient_bootstrap_auc
from node.stats.roc import auc
from node.training.config import TrainConfig
from node.training.data import Sample
from node.training.loop import train, whole_image_logits

# Fields that name or describe a model but do not change what is trained.
_NOT_RECIPE = frozenset(
    {
        "model_id",
        "version",
        "name",
        "out",
        "run_dir",
        "checkpoint_every",
        "training_data",
        "intended_use",
        "licence",
        "data_citation",
    }
)


def recipe_fingerprint(config: TrainConfig, records: Sequence[ImageRecord]) -> str:
    """SHA-256 of everything in the config that changes training and of the images (ids,
    pixel hashes, labels, patients), so a saved cross-validation is reused only for the very
    recipe and data it measured."""
    recipe = {k: v for k, v in asdict(config).items() if k not in _NOT_RECIPE}
    recipe["images"] = sorted((r.image_id, r.sha256, r.label, r.patient_id) for r in records)
    text = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def patient_folds(records: Sequence[ImageRecord], folds: int, seed: int) -> list[int]:
    """The fold (0..folds-1) of each record; all images of a patient share one fold."""
    if folds < 2:
        raise TrainingError(f"cross-validation needs at least 2 folds, got {folds}")
    positive: dict[str, bool] = {}
    for record in records:
        positive[record.patient_id] = positive.get(record.patient_id, False) or (
            record.label in ("benign", "malignant")
        )
    if len(positive) < folds:
        raise TrainingError(f"{len(positive)} patients cannot fill {folds} folds")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    offset = 0
    for group in (True, False):
        ids = sorted(p for p, pos in positive.items() if pos is group)
        order = rng.permutation(len(ids))
        for rank, index in enumerate(order):
            fold_of[ids[int(index)]] = (offset + rank) % folds
        offset += len(ids)  # the second group continues where the first stopped
    return [fold_of[r.patient_id] for r in records]


def cross_validate(
    config: TrainConfig,
    records: Sequence[ImageRecord],
    samples: Sequence[Sample],
    device: torch.device,
) -> dict[str, Any]:
    """Train ``config.cv_folds`` models, each scored on its held-out women.

    Returns the mean of the per-fold AUCs (each fold's scores come from one model, so they
    are comparable among themselves) and the AUC of all out-of-fold scores pooled, with a
    patient-bootstrap 95 % CI (pooling mixes models, so it is the more pessimistic figure).
    With ``flip_average`` on, the same models are also scored without it, to show what the
    test-time averaging adds.
    """
    if len(records) != len(samples):
        raise TrainingError("records and samples must match one to one")
    assignment = np.asarray(patient_folds(records, config.cv_folds, config.seed))
    labels = np.array([s.label for s in samples], dtype=bool)
    patients = [r.patient_id for r in records]
    variants = ("flip", "single") if config.flip_average else ("single",)
    scores = {v: np.zeros(len(samples)) for v in variants}
    per_fold: dict[str, list[float]] = {v: [] for v in variants}
    seconds = []
    for fold in range(config.cv_folds):
        held = assignment == fold
        fold_config = replace(config, run_dir=config.run_dir / "cv" / f"fold{fold}")
        training = [s for s, h in zip(samples, held, strict=True) if not h]
        held_out = [s for s, h in zip(samples, held, strict=True) if h]
        network, history = train(fold_config, training, device)
        seconds.append(history.seconds)
        for variant in variants:
            network.flip_average = variant == "flip"
            logits = whole_image_logits(network, held_out, device, raw=True)
            scores[variant][held] = logits
            per_fold[variant].append(auc(logits.astype(np.float64), labels[held]))
        tqdm.write(
            f"fold {fold + 1}/{config.cv_folds}: held-out AUC {per_fold[variants[0]][-1]:.4f}"
        )
    result: dict[str, Any] = {
        "folds": config.cv_folds,
        "images": len(samples),
        "patients": len(set(patients)),
        "positives": int(labels.sum()),
        "seconds_per_fold": round(float(np.mean(seconds))),
        "recipe": recipe_fingerprint(config, records),
    }
    for variant in variants:
        key = "" if variant == variants[0] else "_without_flip"
        fold_aucs = [round(v, 4) for v in per_fold[variant]]
        pooled = auc(scores[variant], labels)
        low, high = patient_bootstrap_auc(scores[variant], labels, patients)
        result[f"fold_auc{key}"] = fold_aucs
        result[f"mean_fold_auc{key}"] = round(float(np.nanmean(fold_aucs)), 4)
        result[f"pooled_auc{key}"] = round(pooled, 4)
        result[f"pooled_auc_ci{key}"] = [
            round(v, 4) if not math.isnan(v) else None for v in (low, high)
        ]
    return result
