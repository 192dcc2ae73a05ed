"""Train the demonstration model on synthetic phantoms and write a model folder.

    python -m node.training.synthetic --out models/synthetic-unet/0.1.0 \\
        [--steps N] [--seed S]

The model learns to find the phantom's masses and calcification clusters; it has never seen a
real mammogram, and its card says so. Only the data is its own: phantoms rendered in memory
instead of a dataset folder. Training, augmentation, calibration, the AUC and the model folder
are those of ``mammo-node train`` (``node.training.loop``, ``augment``, ``card``,
``node.stats.roc``). Everything is seeded: the same arguments give the same weights on the
same software (up to the non-determinism of CPU kernels).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from monai.utils import set_determinism
from tqdm import tqdm

from node.datasets.manifest import Lesion
from node.inference.runner import prepare
from node.models.registry import load_model
from node.stats.roc import auc
from node.synthetic.phantom import Phantom, make_phantom
from node.training.card import registry_spec, render_synthetic_card, write_model_yaml
from node.training.config import TrainConfig
from node.training.data import Sample, lesion_target
from node.training.loop import calibrate, train

INPUT_SIZE = (256, 208)
FEATURES = (8, 16, 32, 64, 128, 8)
CROP = (128, 128)
TRAIN_SEED_BASE, CALIB_SEED_BASE, TEST_SEED_BASE = 0, 5_000_000, 9_000_000
NAME = "Synthetic-phantom lesion detector (demonstration)"
INTENDED_USE = (
    "Demonstration and integration testing of mammo-node on synthetic phantoms. "
    "NOT FOR CLINICAL USE."
)


def _random_phantom(rng: np.random.Generator, seed: int, rows: int, columns: int) -> Phantom:
    """A phantom with a random view, side and case mix (normal / masses / calcifications)."""
    case = rng.random()
    lesions = 0 if case < 0.35 else int(rng.integers(1, 3)) if case < 0.85 else 0
    calcifications = int(rng.random() < 0.3) if lesions else int(case >= 0.85)
    return make_phantom(
        seed,
        rows,
        columns,
        laterality="L" if rng.random() < 0.5 else "R",
        view="CC" if rng.random() < 0.5 else "MLO",
        lesions=lesions,
        calcifications=calcifications,
    )


def phantom_sample(image_id: str, phantom: Phantom, laterality: str) -> Sample:
    """The phantom through the node's ``prepare``, its lesions as the training heatmap."""
    pixels = phantom.pixels.astype(np.float32) / ((1 << phantom.bits_stored) - 1)
    image, geometry = prepare(pixels, laterality, INPUT_SIZE)
    lesions = [Lesion(x.column, x.row, x.radius) for x in phantom.lesions]
    heat = lesion_target(lesions, geometry, INPUT_SIZE)
    return Sample(image_id, image, heat, label=int(bool(lesions)), located=True)


def make_samples(
    count: int, seed_base: int, rng: np.random.Generator, laterality_known: bool = True
) -> list[Sample]:
    """Pre-rendered 512x416 phantoms; ``laterality_known=False`` lets ``prepare`` find the
    chest wall itself, as it does for images without a side."""
    samples = []
    for i in tqdm(range(count), desc="phantoms", leave=False):
        phantom = _random_phantom(rng, seed_base + i, 512, 416)
        side = phantom.laterality if laterality_known else ""
        samples.append(phantom_sample(f"phantom-{seed_base + i}", phantom, side))
    return samples


def recipe(
    out: Path, run_dir: Path, steps: int, batch: int, seed: int, threads: int
) -> TrainConfig:
    """The demonstration model's recipe in the training stack's own config."""
    model_id, version = out.parent.name, out.name
    return TrainConfig(
        model_id=model_id,
        version=version,
        name=NAME,
        dataset=out,  # unused: the phantoms are rendered in memory, not read from a folder
        out=out,
        run_dir=run_dir,
        input_size=INPUT_SIZE,
        crop=CROP,
        features=FEATURES,
        top_k=16,
        steps=steps,
        batch_size=batch,
        learning_rate=3e-3,
        weight_decay=1e-4,
        heatmap_pos_weight=5.0,
        image_loss_weight=0.5,
        balance=False,
        seed=seed,
        threads=threads,
        checkpoint_every=steps,
        finding_threshold=0.5,
        training_data=f"synthetic phantoms only (node.synthetic.phantom), {steps} steps, "
        f"seed {seed}; no real mammograms",
        intended_use=INTENDED_USE,
        licence="Apache-2.0",
    )


def evaluate(out: Path, count: int, seed: int) -> dict[str, Any]:
    """Score full-size (1024x832) held-out phantoms through the shipped load/predict path."""
    model = load_model(out.parent.parent, f"{out.parent.name}/{out.name}")
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {"normal": [], "mass": [], "calcification": []}
    located, false_findings, elapsed = 0, 0, 0.0
    for i in tqdm(range(count), desc="held-out", leave=False):
        kind = ("normal", "mass", "calcification")[i % 3]
        phantom = make_phantom(
            TEST_SEED_BASE + i,
            laterality="L" if rng.random() < 0.5 else "R",
            view="CC" if rng.random() < 0.5 else "MLO",
            lesions=int(kind == "mass"),
            calcifications=int(kind == "calcification"),
        )
        pixels = phantom.pixels.astype(np.float32) / ((1 << phantom.bits_stored) - 1)
        start = time.perf_counter()
        prediction = model.predict(pixels, phantom.laterality)
        elapsed += time.perf_counter() - start
        scores[kind].append(prediction.score)
        if kind == "normal":
            false_findings += len(prediction.findings)
        elif any(
            np.hypot(f.column - t.column, f.row - t.row) <= 2 * t.radius
            for f in prediction.findings
            for t in phantom.lesions
        ):
            located += 1
    op = model.spec.operating_point
    positives = scores["mass"] + scores["calcification"]
    return {
        "heldout_images": count,
        "heldout_set": "synthetic phantoms 1024x832, 1/3 normal, 1/3 one mass, 1/3 one "
        "calcification cluster; seeds disjoint from training and calibration",
        "auc_mass_vs_normal": _auc(scores["mass"], scores["normal"]),
        "auc_calcification_vs_normal": _auc(scores["calcification"], scores["normal"]),
        "sensitivity_at_operating_point": round(float(np.mean(np.asarray(positives) >= op)), 3),
        "sensitivity_mass_at_operating_point": round(
            float(np.mean(np.asarray(scores["mass"]) >= op)), 3
        ),
        "specificity_at_operating_point": round(
            float(np.mean(np.asarray(scores["normal"]) < op)), 3
        ),
        "lesions_located_within_2_radii": round(located / max(1, len(positives)), 3),
        "false_findings_per_normal_image": round(false_findings / max(1, len(scores["normal"])), 3),
        "cpu_ms_per_image": round(1000 * elapsed / count, 1),
    }


def _auc(positives: list[float], negatives: list[float]) -> float:
    scores = np.asarray(positives + negatives, dtype=np.float64)
    labels = np.arange(scores.size) < len(positives)
    return round(auc(scores, labels), 3)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="models/<id>/<version>")
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--pool", type=int, default=600, help="training phantoms")
    parser.add_argument("--calibration", type=int, default=120)
    parser.add_argument("--heldout", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    out: Path = args.out
    torch.set_num_threads(args.threads)
    set_determinism(seed=args.seed)
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    samples = make_samples(args.pool, TRAIN_SEED_BASE + args.seed * 100_000, rng)
    calibration = make_samples(
        args.calibration, CALIB_SEED_BASE, np.random.default_rng(args.seed + 1), False
    )
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="synthetic-run-") as run_dir:
        config = recipe(out, Path(run_dir), args.steps, args.batch, args.seed, args.threads)
        network, _ = train(config, samples, device)
    calibrate(network, calibration, device)
    train_s = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), out / "weights.pt")
    spec = registry_spec(config, 0.5, {})
    write_model_yaml(out, spec)
    spec["evaluation"] = evaluate(out, args.heldout, args.seed + 2)
    spec["evaluation"]["training_seconds_1_cpu_thread"] = round(train_s)
    write_model_yaml(out, spec)
    card = render_synthetic_card(out, args.pool, args.calibration, CROP, train_s)
    (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    print(yaml.safe_dump(spec["evaluation"], sort_keys=False))


if __name__ == "__main__":
    main()
