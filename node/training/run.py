"""``mammo-node train``: dataset folder + config -> model folder the node serves unchanged."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from monai.utils import set_determinism

from node.datasets.manifest import read_dataset_info, read_manifest
from node.errors import TrainingError
from node.models.registry import load_model
from node.training.card import TRAINING_IMAGES, model_yaml, write_card, write_model_yaml
from node.training.config import TrainConfig
from node.training.cv import cross_validate, recipe_fingerprint
from node.training.data import load_samples
from node.training.loop import History, calibrate, operating_point, train

CURVES = "training_curves.png"
CV_RESULT = "cv.json"


def plot_history(history: History, path: Path) -> None:
    """Loss (raw and smoothed) and the training-set AUC at each checkpoint."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = np.asarray(history.steps)
    for name, values in (
        ("total", history.loss),
        ("heatmap", history.heat_loss),
        ("image", history.image_loss),
    ):
        v = np.asarray(values)
        if v.size:
            window = max(1, min(25, v.size // 10))
            smooth = np.convolve(v, np.ones(window) / window, mode="valid")
            left.plot(steps[window - 1 :], smooth, label=name)
    left.set_xlabel("step")
    left.set_ylabel("loss (moving mean)")
    left.legend()
    right.plot(history.auc_steps, history.train_auc, "o-")
    right.set_ylim(0.4, 1.0)
    right.set_xlabel("step")
    right.set_ylabel("AUC on training images (optimistic)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_training(
    config: TrainConfig,
    resume: bool = False,
    device_name: str | None = None,
    cv_only: bool = False,
) -> dict[str, Any]:
    """Train, calibrate, choose the operating point, write and reload the model folder.

    With ``config.cv_folds`` > 1, a patient-level cross-validation in the train splits runs
    first (``run_dir/cv.json``; a saved one of the same recipe is reused) and is recorded in
    model.yaml; ``cv_only`` always measures afresh, stops after it and writes no model.
    """
    torch.set_num_threads(config.threads)
    set_determinism(seed=config.seed)
    device = torch.device(device_name or ("cuda" if torch.cuda.is_available() else "cpu"))
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
    samples = load_samples(config.dataset, records, config.input_size, config.positive_labels)
    cv: dict[str, Any] | None = None
    if config.cv_folds or cv_only:
        if config.cv_folds < 2:
            raise TrainingError("cross-validation needs cv_folds >= 2 in the config")
        saved = config.run_dir / CV_RESULT
        if not cv_only and saved.exists():
            previous = json.loads(saved.read_text(encoding="utf-8"))
            if previous.get("recipe") == recipe_fingerprint(config, records):
                cv = previous  # the same recipe's folds, measured by an earlier --cv-only
        if cv is None:
            cv = cross_validate(config, records, samples, device)
            config.run_dir.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(cv, indent=2), encoding="utf-8")
        if cv_only:
            return {"cross_validation": cv}
    network, history = train(config, samples, device, resume=resume)
    calibrate(network, samples, device)
    op = operating_point(network, samples, device, config.operating_sensitivity)
    network = network.cpu()

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), out / "weights.pt")
    with (out / TRAINING_IMAGES).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "sha256"])
        for record in records:
            writer.writerow([record.image_id, record.sha256])
    trained_on = {
        "dataset_id": info["id"],
        "splits": list(config.train_splits),
        "images": len(records),
        "patients": len({r.patient_id for r in records}),
        "positives": sum(s.label for s in samples),
        "positive_labels": list(config.positive_labels),
    }
    if config.data_citation:
        trained_on["citation"] = config.data_citation
    training: dict[str, Any] = {
        "steps": config.steps,
        "batch_size": config.batch_size,
        "crop": list(config.crop) if config.crop else None,
        "balance": config.balance,
        "seed": config.seed,
        "threads": config.threads,
        "device": str(device),
        "seconds": round(history.seconds),
        "operating_sensitivity": config.operating_sensitivity,
        "final_train_auc": round(history.train_auc[-1], 3) if history.train_auc else None,
        "image_scale": round(network.image_scale.item(), 4),
        "image_bias": round(network.image_bias.item(), 4),
    }
    if cv is not None:
        training["cross_validation"] = cv
    write_model_yaml(out, model_yaml(config, trained_on, op, training))
    plot_history(history, config.run_dir / CURVES)
    shutil.copyfile(config.run_dir / CURVES, out / CURVES)
    (config.run_dir / "history.json").write_text(json.dumps(history.as_dict()), encoding="utf-8")
    write_card(out)
    load_model(out.parent.parent, f"{config.model_id}/{config.version}")  # served as written?
    return {"out": str(out), "operating_point": op, **training}
