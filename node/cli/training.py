"""``mammo-node train --config FILE``: train a model folder from a dataset folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from node.training.config import config_recipe, load_config
from node.training.contralateral import RECIPE, load_contralateral_config, run_contralateral
from node.training.run import run_training


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``train`` to a parent CLI's subcommands."""
    train = subparsers.add_parser(
        "train",
        help="train a lesion-heatmap + image-score model on a dataset folder",
        description="Train a MONAI LesionNet (lesion heatmap where lesions are located, image "
        "score for every image) on the train split of a dataset folder (mammo-node data "
        "import), with mammography augmentation, class-balanced batches, checkpoints and a "
        "loss/AUC plot; then Platt-calibrate, pick the operating point and write "
        "models/<id>/<version>/ (model.yaml, weights.pt, MODEL_CARD.md) that the node and "
        "`mammo-node predict --model ID` load unchanged. Uses a GPU when present.",
    )
    train.add_argument(
        "--config", type=Path, required=True, help="training YAML (see models/mias-unet/train.yaml)"
    )
    train.add_argument("--dataset", type=Path, help="dataset folder (overrides the config)")
    train.add_argument("--out", type=Path, help="models/<id>/<version> (overrides the config)")
    train.add_argument(
        "--resume", action="store_true", help="continue from the run folder's checkpoint"
    )
    train.add_argument(
        "--cv-only",
        action="store_true",
        help="only run the config's patient-level cross-validation (cv_folds) in the train "
        "splits and print it; writes no model (for choosing a recipe without the val split)",
    )
    train.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    train.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    if config_recipe(args.config) == RECIPE:  # the exam-aware model (node.training.contralateral)
        summary = run_contralateral(
            load_contralateral_config(args.config, dataset=args.dataset, out=args.out),
            cv_only=args.cv_only,
        )
        print(json.dumps(summary, indent=2))
        return 0
    config = load_config(args.config, dataset=args.dataset, out=args.out)
    summary = run_training(
        config, resume=args.resume, device_name=args.device, cv_only=args.cv_only
    )
    print(json.dumps(summary, indent=2))
    return 0
