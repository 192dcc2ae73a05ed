"""The training loop: multi-task (lesion heatmap + image label), balanced, checkpointed, seeded.

Losses: heatmap BCE (positive pixels up-weighted) + soft Dice, on images whose heatmap is
supervised (normal images and abnormal ones with located lesions); image-level BCE on the
network's image logit for every image, so calcifications "spread over the breast" (no
coordinates) still teach the image score. Batches are half positive, half negative when
``balance`` is on: with 1 abnormal image in 3 the network would otherwise learn "normal".

Resuming: the random streams are re-seeded from (seed, step) at every checkpoint boundary, so
a resumed run continues exactly as the uninterrupted one would (up to CPU kernel
non-determinism).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceLoss
from torch.nn import functional as F
from tqdm import tqdm

from node.errors import TrainingError
from node.inference.network import LesionNet
from node.stats.roc import auc
from node.training.augment import build_augment
from node.training.config import TrainConfig
from node.training.data import Sample

CHECKPOINT = "checkpoint.pt"


@dataclass
class History:
    """Per-step losses and periodic training-set AUC, for the curves plot and the card."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    heat_loss: list[float] = field(default_factory=list)
    image_loss: list[float] = field(default_factory=list)
    auc_steps: list[int] = field(default_factory=list)
    train_auc: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _batch(
    samples: list[Sample], rng: np.random.Generator, size: int, balance: bool
) -> list[Sample]:
    if not balance:
        return [samples[int(i)] for i in rng.integers(0, len(samples), size)]
    positives = [s for s in samples if s.label]
    negatives = [s for s in samples if not s.label]
    if not positives or not negatives:
        raise TrainingError("balanced training needs positive and negative images")
    half = size // 2
    chosen = [positives[int(i)] for i in rng.integers(0, len(positives), half)]
    chosen += [negatives[int(i)] for i in rng.integers(0, len(negatives), size - half)]
    return chosen


def whole_image_logits(
    network: LesionNet, samples: list[Sample], device: torch.device, raw: bool = False
) -> np.ndarray:
    """Image logits on un-augmented whole images (eval mode); ``raw``: before Platt scaling."""
    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(samples), 16):
            chunk = samples[start : start + 16]
            batch = torch.from_numpy(np.stack([s.image for s in chunk]))[:, None].to(device)
            _, logit = network.raw_score(batch) if raw else network(batch)
            out.append(logit.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _train_auc(network: LesionNet, samples: list[Sample], device: torch.device) -> float:
    logits = whole_image_logits(network, samples, device)
    labels = np.array([s.label for s in samples], dtype=bool)
    value = auc(logits.astype(np.float64), labels)
    network.train()
    return value


def _save(
    path: Path, network: LesionNet, optimiser: Any, schedule: Any, step: int, history: History
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "step": step,
            "network": network.state_dict(),
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "history": history.as_dict(),
        },
        tmp,
    )
    tmp.replace(path)  # atomic: a crash mid-save never leaves a broken checkpoint


def train(
    config: TrainConfig,
    samples: list[Sample],
    device: torch.device,
    resume: bool = False,
) -> tuple[LesionNet, History]:
    """Train a LesionNet; checkpoints go to ``config.run_dir``; ``resume`` continues from one."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = config.run_dir / CHECKPOINT
    torch.manual_seed(config.seed)
    network = LesionNet(
        config.features,
        top_k=config.top_k,
        global_head=config.global_head,
        flip_average=config.flip_average,
    ).to(device)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=config.steps
    )
    history = History()
    start = 0
    if resume:
        if not checkpoint.exists():
            raise TrainingError(f"--resume: no checkpoint at {checkpoint}")
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        history = History(**state["history"])
        start = int(state["step"])
        if start >= config.steps:
            return network, history
    elif checkpoint.exists():
        checkpoint.unlink()  # a fresh run never mixes with an old one
    dice = DiceLoss(sigmoid=True, batch=True)
    pos_weight = torch.tensor(config.heatmap_pos_weight, device=device)
    augment = build_augment(config.augment, config.input_size, config.crop)
    usable = [s for s in samples if config.crop is None or s.located]
    began = time.perf_counter() - history.seconds
    network.train()
    rng = np.random.default_rng([config.seed, start])
    augment.set_random_state(seed=(config.seed * 1_000_003 + start) % 2**32)
    progress = tqdm(range(start, config.steps), desc="training", initial=start, total=config.steps)
    for step in progress:
        if step > start and step % config.checkpoint_every == 0:
            rng = np.random.default_rng([config.seed, step])
            augment.set_random_state(seed=(config.seed * 1_000_003 + step) % 2**32)
        chosen = _batch(usable, rng, config.batch_size, config.balance)
        images, heats = [], []
        for sample in chosen:
            out = augment(
                {
                    "image": sample.image[None],
                    "heat": sample.heat[None],
                    "label": sample.heat[None] > 0.5,
                }
            )
            if isinstance(out, list):
                out = out[0]
            images.append(torch.as_tensor(np.asarray(out["image"]), dtype=torch.float32))
            heats.append(torch.as_tensor(np.asarray(out["heat"]), dtype=torch.float32))
        image_t = torch.stack(images).to(device)
        heat_t = torch.stack(heats).to(device)
        if config.crop is None:
            labels = torch.tensor([float(s.label) for s in chosen], device=device)
        else:  # a crop is positive when it still holds a lesion's core
            labels = (heat_t.flatten(1).amax(1) > 0.5).float()
        located = torch.tensor([s.located for s in chosen], device=device)
        heat_logits, image_logits = network(image_t)
        image_loss = F.binary_cross_entropy_with_logits(image_logits, labels)
        if bool(located.any()):
            hl, ht = heat_logits[located], heat_t[located]
            heat_loss = F.binary_cross_entropy_with_logits(hl, ht, pos_weight=pos_weight) + dice(
                hl, ht
            )
        else:
            heat_loss = torch.zeros((), device=device)
        loss = heat_loss + config.image_loss_weight * image_loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        history.steps.append(step + 1)
        history.loss.append(loss.item())
        history.heat_loss.append(heat_loss.item())
        history.image_loss.append(image_loss.item())
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            history.auc_steps.append(step + 1)
            history.train_auc.append(_train_auc(network, samples, device))
            history.seconds = time.perf_counter() - began
            _save(checkpoint, network, optimiser, schedule, step + 1, history)
    network.eval()
    history.seconds = time.perf_counter() - began
    return network, history


def calibrate(network: LesionNet, samples: list[Sample], device: torch.device) -> None:
    """Platt scaling of the image logit (``image_scale``, ``image_bias``) on ``samples``.

    The reference model calibrates on its training images (the data set is too small to hold
    out a third split); the evaluation's reliability plot and ECE show how well that worked.
    """
    x = torch.from_numpy(whole_image_logits(network, samples, device, raw=True)).double()
    y = torch.tensor([float(s.label) for s in samples], dtype=torch.float64)
    a = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([a, b], max_iter=200)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.binary_cross_entropy_with_logits(a * x + b, y) + 1e-3 * a * a
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it untyped
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        network.image_scale.fill_(float(a))
        network.image_bias.fill_(float(b))


def operating_point(
    network: LesionNet, samples: list[Sample], device: torch.device, sensitivity: float
) -> float:
    """Highest score threshold reaching ``sensitivity`` on ``samples`` (clipped into (0, 1))."""
    logits = whole_image_logits(network, samples, device)
    scores = 1.0 / (1.0 + np.exp(-logits))
    positive = np.sort(scores[np.array([s.label for s in samples], dtype=bool)])[::-1]
    if positive.size == 0:
        return 0.5
    index = min(positive.size - 1, int(np.ceil(sensitivity * positive.size)) - 1)
    return float(np.clip(positive[index], 0.01, 0.99))
