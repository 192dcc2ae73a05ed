"""The training config (YAML), validated strictly: a typo must fail before minutes of training.

Paths in the file are relative to the current directory (the repository root for ``make``);
``--dataset`` and ``--out`` on the command line override them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from node.errors import TrainingError

_LABELS = {"benign", "malignant"}


@dataclass(frozen=True)
class AugmentConfig:
    """Mammography-safe augmentation: no left-right flip (prepare turns every breast chest
    wall left, so a mirrored image is one the node never serves)."""

    vertical_flip: float = 0.5
    rotate_degrees: float = 10.0
    scale: float = 0.1
    translate: float = 0.05
    intensity: float = 0.2
    gamma: tuple[float, float] = (0.7, 1.4)
    noise: float = 0.02
    erase: float = 0.0  # probability of blanking 1-3 random patches (random erasing)


@dataclass(frozen=True)
class TrainConfig:
    model_id: str
    version: str
    name: str
    dataset: Path
    out: Path
    run_dir: Path
    train_splits: tuple[str, ...] = ("train",)
    positive_labels: tuple[str, ...] = ("benign", "malignant")
    input_size: tuple[int, int] = (256, 256)
    crop: tuple[int, int] | None = None  # None: whole images (image-level-only labels usable)
    features: tuple[int, ...] = (8, 16, 32, 64, 128, 8)
    top_k: int = 16
    global_head: bool = False  # LesionNet(global_head=...): pooled bottleneck read-out
    flip_average: bool = False  # LesionNet(flip_average=...): up-down test-time averaging
    cv_folds: int = 0  # > 1: patient-level cross-validation in the train splits first
    steps: int = 600
    batch_size: int = 8
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    heatmap_pos_weight: float = 5.0
    image_loss_weight: float = 1.0
    balance: bool = True
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 100
    operating_sensitivity: float = 0.85
    finding_threshold: float = 0.5
    training_data: str = ""
    intended_use: str = "Research and integration testing. NOT FOR CLINICAL USE."
    licence: str = "Apache-2.0 (code); weights derived from data under its own licence"
    data_citation: str = ""
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def config_recipe(path: Path) -> str:
    """The ``recipe`` a training config names ("" for the LesionNet recipe of this module)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrainingError(f"cannot read config {path}: {exc}") from exc
    recipe = raw.get("recipe", "") if isinstance(raw, dict) else ""
    if not isinstance(recipe, str):
        raise TrainingError(f"{path}: recipe must be a string, got {recipe!r}")
    return recipe


def _tuple(value: Any, name: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise TrainingError(f"{name} must be a list, got {value!r}")
    return tuple(value)


def run_paths(raw: dict[str, Any], dataset: Path | None, out: Path | None) -> dict[str, Any]:
    """A config's values with its paths as Paths and ``--dataset``/``--out`` applied: the
    model id and version come from the output folder, the run folder defaults beside it."""
    values: dict[str, Any] = dict(raw)
    for key in ("dataset", "out", "run_dir"):
        if key in values:
            values[key] = Path(values[key])
    if dataset is not None:
        values["dataset"] = dataset
    if out is not None:
        values["out"] = out
        values["model_id"], values["version"] = out.parent.name, out.name
    if "out" in values:
        run = f"{values['out'].parent.name}-{values['out'].name}"
        values.setdefault("run_dir", Path("var/train") / run)
    return values


def load_config(path: Path, dataset: Path | None = None, out: Path | None = None) -> TrainConfig:
    """Read and check a training config; unknown keys are errors."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrainingError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise TrainingError(f"{path}: must be a mapping")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TrainingError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    augment_raw = raw.pop("augment", {}) or {}
    augment_known = {f.name for f in fields(AugmentConfig)}
    if set(augment_raw) - augment_known:
        raise TrainingError(
            f"{path}: unknown augment keys {sorted(set(augment_raw) - augment_known)}"
        )
    if "gamma" in augment_raw:
        augment_raw["gamma"] = _tuple(augment_raw["gamma"], "augment.gamma")
    values = run_paths(raw, dataset, out)
    for key in ("train_splits", "positive_labels", "input_size", "features"):
        if key in values:
            values[key] = _tuple(values[key], key)
    if values.get("crop") is not None:
        values["crop"] = _tuple(values["crop"], "crop")
    try:
        config = TrainConfig(**values, augment=AugmentConfig(**augment_raw))
    except TypeError as exc:
        raise TrainingError(f"{path}: {exc}") from exc
    _check(config, path)
    return config


def _check(c: TrainConfig, path: Path) -> None:
    problems = []
    if (c.out.parent.name, c.out.name) != (c.model_id, c.version):
        problems.append(f"out {c.out} must end in {c.model_id}/{c.version}")
    if not set(c.positive_labels) or not set(c.positive_labels) <= _LABELS:
        problems.append(f"positive_labels must be a subset of {sorted(_LABELS)}")
    if len(c.input_size) != 2 or not all(32 <= v <= 4096 and v % 16 == 0 for v in c.input_size):
        problems.append("input_size must be [rows, cols], multiples of 16 in 32..4096")
    if c.crop is not None and (
        len(c.crop) != 2 or any(v % 16 or v > s for v, s in zip(c.crop, c.input_size, strict=False))
    ):
        problems.append("crop must be [rows, cols], multiples of 16, within input_size")
    if c.steps < 1 or c.batch_size < 2 or c.checkpoint_every < 1 or c.threads < 1:
        problems.append("steps, checkpoint_every, threads must be >= 1 and batch_size >= 2")
    if c.cv_folds < 0 or c.cv_folds == 1:
        problems.append("cv_folds must be 0 (none) or >= 2")
    if not 0.0 <= c.augment.erase <= 1.0:
        problems.append("augment.erase must lie in [0, 1]")
    if not 0 < c.operating_sensitivity < 1 or not 0 < c.finding_threshold < 1:
        problems.append("operating_sensitivity and finding_threshold must lie in (0, 1)")
    if "not for clinical use" not in c.intended_use.lower():
        problems.append("intended_use must say NOT FOR CLINICAL USE")
    if problems:
        raise TrainingError(f"{path}: " + "; ".join(problems))
