"""Score a dataset split with a model through the node's own load/predict path.

Evaluated = served: images go through ``registry.load_model`` and the model's
``predict_exam`` exactly as the node runs them, one woman's images together as one exam, so an
exam-aware model compares each breast with her other breast of the same view (only the
finding threshold is lowered, to trace the FROC).
Before anything is scored, the model's record of its training data is checked: a model is
never evaluated on a split, or an image (by pixel hash), it was trained on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from node.datasets.manifest import (
    ImageRecord,
    lesion_at,
    read_dataset_info,
    read_lesion_mask,
    read_manifest,
)
from node.dicom.pixels import read_image_file
from node.domain import ExamImage
from node.errors import EvaluationRefused
from node.evaluation.froc import ScoredFinding
from node.models.registry import ModelFolder, find_model, load_model
from node.training.card import TRAINING_IMAGES, read_model_yaml

FROC_THRESHOLD = 0.05  # findings down to this heatmap peak are kept for the FROC


@dataclass(frozen=True)
class ImageScore:
    record: ImageRecord
    score: float
    findings: list[ScoredFinding]  # stored-image pixels, row 0 at the top
    compared: bool | None = None  # ImagePrediction.compared


@dataclass(frozen=True)
class ScoredModel:
    ref: str
    folder: ModelFolder
    trained_on: dict[str, Any]
    scores: list[ImageScore]


def trained_on(folder: ModelFolder) -> dict[str, Any]:
    """What the model records about its training data ({} for models that record nothing)."""
    evaluation = read_model_yaml(folder.path).get("evaluation") or {}
    value = evaluation.get("trained_on") or {}
    return dict(value) if isinstance(value, dict) else {}


def _training_hashes(folder: ModelFolder) -> dict[str, str]:
    path = folder.path / TRAINING_IMAGES
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {row["sha256"]: row["image_id"] for row in csv.DictReader(f) if row.get("sha256")}


def refuse_training_images(
    folder: ModelFolder, dataset: Path, split: str, records: list[ImageRecord]
) -> None:
    """Raise ``EvaluationRefused`` when ``records`` overlap what the model trained on."""
    info = read_dataset_info(dataset)
    record = trained_on(folder)
    if record.get("dataset_id") == info["id"] and split in record.get("splits", []):
        raise EvaluationRefused(
            f"{folder.spec.ref} was trained on split {split!r} of "
            f"dataset {info['id']!r}; evaluate it on a split it never saw"
        )
    seen = _training_hashes(folder)
    overlap = sorted(r.image_id for r in records if r.sha256 and r.sha256 in seen)
    if overlap:
        raise EvaluationRefused(
            f"{len(overlap)} images of split {split!r} have the same pixels as training images "
            f"of {folder.spec.ref}: {', '.join(overlap[:10])}"
        )


def select(dataset: Path, split: str) -> list[ImageRecord]:
    records = [r for r in read_manifest(dataset) if r.split == split and r.label != "unknown"]
    if not records:
        raise EvaluationRefused(f"no labelled images in split {split!r} of {dataset}")
    return records


def score_split(
    models_dir: Path, ref: str, dataset: Path, split: str, device: str | None = None
) -> ScoredModel:
    """Refuse or score every labelled image of ``split`` with model ``ref``."""
    folder = find_model(models_dir, ref)
    records = select(dataset, split)
    refuse_training_images(folder, dataset, split, records)
    low = load_model(models_dir, ref, device).with_finding_threshold(FROC_THRESHOLD)
    exams: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        exams.setdefault(record.patient_id, []).append(index)
    scored: dict[int, ImageScore] = {}
    with tqdm(total=len(records), desc=f"scoring {ref}", unit="image", leave=False) as bar:
        for members in exams.values():
            images = []
            for index in members:
                pixels, _ = read_image_file(dataset / records[index].path)
                images.append(ExamImage(pixels, records[index].laterality, records[index].view))
            for index, prediction in zip(members, low.predict_exam(images), strict=True):
                mask = read_lesion_mask(dataset, records[index])
                scored[index] = ImageScore(
                    records[index],
                    prediction.score,
                    [
                        ScoredFinding(f.column, f.row, f.score, lesion_at(mask, f.column, f.row))
                        for f in prediction.findings
                    ],
                    prediction.compared,
                )
            bar.update(len(members))
    scores = [scored[index] for index in range(len(records))]
    return ScoredModel(ref, folder, trained_on(folder), scores)
