"""Train the demonstration model on synthetic phantoms and write a model folder.

    python -m node.training.synthetic --out models/synthetic-unet/0.1.0 \\
        [--steps N] [--seed S]

The model learns to find the phantom's masses and calcification clusters; it has never seen a
real mammogram, and its card says so. Everything is seeded: the same arguments give the same
weights on the same software (up to the non-determinism of CPU kernels).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import yaml
from monai.losses import DiceLoss
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
)
from monai.utils import set_determinism
from torch.nn import functional as F
from tqdm import tqdm

from node.inference.network import LesionNet
from node.inference.runner import prepare
from node.models.registry import MANUFACTURER, PREPROCESSING, device_uid, load_model
from node.synthetic.phantom import Phantom, make_phantom

INPUT_SIZE = (256, 208)
FEATURES = (8, 16, 32, 64, 128, 8)
CROP = (128, 128)
TRAIN_SEED_BASE, CALIB_SEED_BASE, TEST_SEED_BASE = 0, 5_000_000, 9_000_000


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


def target_heatmap(phantom: Phantom, laterality: str) -> tuple[npt.NDArray[np.float32], int]:
    """Network input, soft-disc lesion target (0.5 at each lesion's radius) and image label."""
    pixels = phantom.pixels.astype(np.float32) / ((1 << phantom.bits_stored) - 1)
    image, geometry = prepare(pixels, laterality, INPUT_SIZE)
    rr = np.arange(INPUT_SIZE[0], dtype=np.float32)[:, None]
    cc = np.arange(INPUT_SIZE[1], dtype=np.float32)[None, :]
    target = np.zeros(INPUT_SIZE, np.float32)
    columns = geometry.source_shape[1]
    for lesion in phantom.lesions:
        col = columns - 1 - lesion.column if geometry.flipped else lesion.column
        r = lesion.radius * geometry.scale
        d = np.hypot(
            rr - ((lesion.row + 0.5) * geometry.scale - 0.5),
            cc - ((col + 0.5) * geometry.scale - 0.5),
        )
        target = np.maximum(
            target, 1.0 / (1.0 + np.exp(np.minimum((d - r) / (0.15 * r + 0.5), 50.0)))
        )
    return np.stack([image, target]), int(bool(phantom.lesions))


def make_pool(count: int, seed_base: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Pre-rendered training samples (channel-first arrays, as MONAI dict transforms expect)."""
    pool = []
    for i in tqdm(range(count), desc="phantoms", leave=False):
        phantom = _random_phantom(rng, seed_base + i, 512, 416)
        stacked, _ = target_heatmap(phantom, phantom.laterality)
        pool.append({"image": stacked[:1], "heat": stacked[1:], "label": stacked[1:] > 0.5})
    return pool


def _augment() -> Compose:
    # No left-right flip: every breast has been turned chest wall left by ``prepare``.
    return Compose(
        [
            RandCropByPosNegLabeld(
                keys=["image", "heat"],
                label_key="label",
                spatial_size=CROP,
                pos=1.0,
                neg=1.0,
                num_samples=1,
                allow_smaller=True,
            ),
            RandFlipd(keys=["image", "heat"], prob=0.5, spatial_axis=0),
            RandScaleIntensityd(keys=["image"], factors=0.2, prob=0.8),
            RandAdjustContrastd(keys=["image"], gamma=(0.7, 1.4), prob=0.5),
            RandGaussianNoised(keys=["image"], std=0.02, prob=0.5),
        ]
    )


def train(
    network: LesionNet, pool: list[dict[str, Any]], steps: int, batch: int, seed: int
) -> None:
    augment = _augment()
    augment.set_random_state(seed=seed)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(network.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    dice = DiceLoss(sigmoid=True, batch=True)
    network.train()
    progress = tqdm(range(steps), desc="training")
    for _ in progress:
        samples = [augment(pool[int(i)])[0] for i in rng.integers(0, len(pool), batch)]
        images = torch.stack([torch.as_tensor(s["image"]) for s in samples]).float()
        heat = torch.stack([torch.as_tensor(s["heat"]) for s in samples]).float()
        labels = (heat.flatten(1).amax(1) > 0.5).float()
        heat_logits, image_logits = network(images)
        loss = (
            F.binary_cross_entropy_with_logits(heat_logits, heat, pos_weight=torch.tensor(5.0))
            + dice(heat_logits, heat)
            + 0.5 * F.binary_cross_entropy_with_logits(image_logits, labels)
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    network.eval()


def calibrate(network: LesionNet, count: int, seed: int) -> None:
    """Platt scaling of the image logit on whole images the network has not trained on."""
    rng = np.random.default_rng(seed)
    peaks, labels = [], []
    with torch.no_grad():
        for i in range(count):
            stacked, label = target_heatmap(_random_phantom(rng, CALIB_SEED_BASE + i, 512, 416), "")
            network.image_scale.fill_(1.0)
            network.image_bias.fill_(0.0)
            _, logit = network(torch.from_numpy(stacked[:1])[None])
            peaks.append(float(logit[0]))
            labels.append(label)
    x, y = torch.tensor(peaks), torch.tensor(labels, dtype=torch.float32)
    a, b = torch.tensor(1.0, requires_grad=True), torch.tensor(0.0, requires_grad=True)
    optimiser = torch.optim.LBFGS([a, b], max_iter=200)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.binary_cross_entropy_with_logits(a * x + b, y)
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        network.image_scale.fill_(a.item())
        network.image_bias.fill_(b.item())


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic (ties count half)."""
    p, n = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


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
        "auc_mass_vs_normal": round(auc(scores["mass"], scores["normal"]), 3),
        "auc_calcification_vs_normal": round(auc(scores["calcification"], scores["normal"]), 3),
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


def model_yaml(
    model_id: str, version: str, evaluation: dict[str, Any], seed: int, steps: int
) -> dict[str, Any]:
    return {
        "id": model_id,
        "version": version,
        "name": "Synthetic-phantom lesion detector (demonstration)",
        "manufacturer": MANUFACTURER,
        "device_uid": device_uid(model_id, version),
        "network": {
            "architecture": "LesionNet",
            "kwargs": {"features": list(FEATURES), "top_k": 16},
        },
        "input_size": list(INPUT_SIZE),
        "preprocessing": dict(PREPROCESSING),
        "operating_point": 0.5,
        "finding_threshold": 0.5,
        "training_data": f"synthetic phantoms only (node.synthetic.phantom), {steps} steps, "
        f"seed {seed}; no real mammograms",
        "intended_use": "Demonstration and integration testing of mammo-node on synthetic "
        "phantoms. NOT FOR CLINICAL USE.",
        "licence": "Apache-2.0",
        "evaluation": evaluation,
    }


CARD = """# {name} — `{id}` {version}

**NOT FOR CLINICAL USE.** This model has never seen a real mammogram.

## What it is
A small 2-D U-Net (MONAI `BasicUNet`, features {features}, {size_kb} kB of weights) that outputs a
lesion heatmap; the image score is a Platt-calibrated sigmoid of the mean of its top-16 logits.
Input: presentation pixels (after Modality/VOI LUT and polarity), breast turned chest wall
left, scaled to {rows}x{cols} keeping the aspect ratio, divided by the median tissue value.

## Training data
{training}: {pool} pre-rendered 512x416 phantoms (35 % normal, 50 % with 1–2 masses, some
spiculated, part with a calcification cluster, 15 % calcification cluster only), random
laterality and view (CC/MLO), MONAI augmentation (pos/neg {crop} crops, vertical flip,
intensity scale, gamma, noise). Calibrated on {calib} further phantoms. Trained on CPU, one
thread, in {train_s} s.

## Measured on held-out synthetic phantoms (this training run)
| measure | value |
|---|---|
{table}

Operating point {op}: image score at or above it suggests recall. Finding threshold {ft}.

## What it can and cannot do
- It can find the bright, round or spiculated blobs and bright dot clusters that
  `node.synthetic.phantom` draws, so the node's pipeline (SEG, SR, heatmaps) can be tested end
  to end with known truth.
- It cannot detect cancer. Real masses, architectural distortion, asymmetries, real
  calcification morphology and real tissue texture are absent from its training data; its scores
  on real images mean nothing. Calcifications are small at {rows}x{cols}; see the measured figures.
"""


def write_card(out: Path, spec: dict[str, Any], pool: int, calib: int, train_s: float) -> None:
    table = "\n".join(f"| {k} | {v} |" for k, v in spec["evaluation"].items())
    rows, cols = spec["input_size"]
    text = CARD.format(
        name=spec["name"],
        id=spec["id"],
        version=spec["version"],
        features=list(FEATURES),
        size_kb=(out / "weights.pt").stat().st_size // 1024,
        rows=rows,
        cols=cols,
        training=spec["training_data"],
        pool=pool,
        crop="x".join(map(str, CROP)),
        calib=calib,
        train_s=round(train_s),
        table=table,
        op=spec["operating_point"],
        ft=spec["finding_threshold"],
    )
    (out / "MODEL_CARD.md").write_text(text, encoding="utf-8")


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
    model_id, version = out.parent.name, out.name
    torch.set_num_threads(args.threads)
    set_determinism(seed=args.seed)
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    pool = make_pool(args.pool, TRAIN_SEED_BASE + args.seed * 100_000, rng)
    network = LesionNet(FEATURES, top_k=16)
    train(network, pool, args.steps, args.batch, args.seed)
    calibrate(network, args.calibration, args.seed + 1)
    train_s = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), out / "weights.pt")
    spec = model_yaml(model_id, version, {}, args.seed, args.steps)
    (out / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    spec["evaluation"] = evaluate(out, args.heldout, args.seed + 2)
    spec["evaluation"]["training_seconds_1_cpu_thread"] = round(train_s)
    (out / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    write_card(out, spec, args.pool, args.calibration, train_s)
    print(yaml.safe_dump(spec["evaluation"], sort_keys=False))


if __name__ == "__main__":
    main()
