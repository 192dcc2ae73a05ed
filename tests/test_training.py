"""Training: config checks, lesion targets through ``prepare``, a tiny run, resume, served = trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from node.datasets.manifest import (
    ImageRecord,
    Lesion,
    read_manifest,
    write_dataset_info,
    write_manifest,
)
from node.errors import TrainingError
from node.inference.network import LesionNet
from node.inference.runner import prepare
from node.models.registry import load_model
from node.training import loop, synthetic
from node.training.card import VALIDATION_HEADING
from node.training.config import load_config
from node.training.cv import patient_folds
from node.training.data import lesion_target, load_samples
from node.training.run import run_training

SIZE = 64
SHIPPED_SYNTHETIC = Path(__file__).resolve().parent.parent / "models" / "synthetic-unet" / "0.1.0"


def make_dataset(folder: Path, patients: int = 8, dataset_id: str = "tiny") -> Path:
    """Synthetic 64x64 'mammograms': a breast against the chest wall, lesions as bright discs.

    Odd patients have a lesion in the right breast; right breasts are stored mirrored (chest
    wall on the right), as real right MLOs are.
    """
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[:SIZE, :SIZE]
    records = []
    for p in range(patients):
        for side in ("R", "L"):
            image = np.where(np.hypot(rr - SIZE / 2, cc) < SIZE * 0.6, 100.0, 0.0)
            image += rng.normal(0, 8, image.shape) * (image > 0)
            lesions: tuple[Lesion, ...] = ()
            if p % 2 and side == "R":
                row, col = float(rng.integers(16, 48)), float(rng.integers(8, 24))
                image[np.hypot(rr - row, cc - col) < 5] = 220
                lesions = (Lesion(column=SIZE - 1 - col, row=row, radius=5.0),)
            if side == "R":
                image = image[:, ::-1]
            image_id = f"s{p:02d}{side}"
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                folder / "images" / f"{image_id}.png"
            )
            records.append(
                ImageRecord(
                    image_id=image_id,
                    patient_id=f"s{p:02d}",
                    laterality=side,
                    view="MLO",
                    label="malignant" if lesions else "normal",
                    lesions=lesions,
                    split="val" if p >= patients - 2 else "train",
                    sha256=f"{image_id}-hash",
                    path=f"images/{image_id}.png",
                )
            )
    write_manifest(folder, records)
    write_dataset_info(folder, {"id": dataset_id})
    return folder


def write_config(path: Path, dataset: Path, out: Path, **overrides: object) -> Path:
    config: dict[str, object] = {
        "model_id": out.parent.name,
        "version": out.name,
        "name": "tiny test model",
        "dataset": str(dataset),
        "out": str(out),
        "run_dir": str(path.parent / "run"),
        "input_size": [SIZE, SIZE],
        "features": [4, 4, 8, 8, 16, 4],
        "top_k": 4,
        "steps": 6,
        "batch_size": 4,
        "checkpoint_every": 3,
        "threads": 1,
        "augment": {"rotate_degrees": 5.0},
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path


def test_config_rejects_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    out = tmp_path / "models" / "tiny" / "0.1.0"
    with pytest.raises(TrainingError, match="unknown keys"):
        load_config(write_config(tmp_path / "a.yaml", tmp_path, out, stepz=3))
    with pytest.raises(TrainingError, match="positive_labels"):
        load_config(write_config(tmp_path / "b.yaml", tmp_path, out, positive_labels=["normal"]))
    with pytest.raises(TrainingError, match="NOT FOR CLINICAL USE"):
        load_config(write_config(tmp_path / "c.yaml", tmp_path, out, intended_use="screening"))
    config = load_config(
        write_config(tmp_path / "d.yaml", tmp_path, out), out=tmp_path / "m" / "x" / "2.0.0"
    )
    assert (config.model_id, config.version) == ("x", "2.0.0")


def test_lesion_target_follows_prepare_mirroring() -> None:
    """A right breast is mirrored by ``prepare``; its lesion disc must be mirrored with it."""
    pixels = np.zeros((128, 96), np.float32)
    pixels[:, 60:] = 0.5  # chest wall on the right, as a right breast is stored
    pixels[40:50, 70:80] = 1.0
    image, geometry = prepare(pixels, "R", (64, 64))
    target = lesion_target([Lesion(column=74.5, row=44.5, radius=5)], geometry, (64, 64))
    peak = np.unravel_index(int(target.argmax()), target.shape)
    bright = np.unravel_index(int(image.argmax()), image.shape)
    assert abs(peak[0] - bright[0]) <= 1 and abs(peak[1] - bright[1]) <= 1
    assert target.max() > 0.9 and target[0, 0] < 1e-3


def test_tiny_training_writes_a_model_the_node_serves(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "ds")
    out = tmp_path / "models" / "tiny" / "0.1.0"
    config = load_config(write_config(tmp_path / "train.yaml", dataset, out))
    summary = run_training(config, device_name="cpu")
    spec = yaml.safe_load((out / "model.yaml").read_text())
    assert spec["evaluation"]["trained_on"] == {
        "dataset_id": "tiny",
        "splits": ["train"],
        "images": 12,
        "patients": 6,
        "positives": 3,
        "positive_labels": ["benign", "malignant"],
    }
    assert 0 < summary["operating_point"] < 1
    assert "NOT FOR CLINICAL USE" in (out / "MODEL_CARD.md").read_text()
    assert (out / "training_curves.png").stat().st_size > 1000
    assert "s00L" in (out / "training_images.csv").read_text()
    model = load_model(tmp_path / "models", "tiny")
    pixels = np.asarray(Image.open(dataset / "images" / "s01R.png"), np.float32) / 255
    prediction = model.predict(pixels, "R")
    assert 0.0 <= prediction.score <= 1.0 and prediction.heatmap.shape == pixels.shape


def test_resume_continues_where_the_run_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = make_dataset(tmp_path / "ds")
    out = tmp_path / "models" / "tiny" / "0.1.0"
    path = write_config(tmp_path / "train.yaml", dataset, out)
    config = load_config(path)
    records = [r for r in read_manifest(dataset) if r.split == "train"]
    samples = load_samples(dataset, records, config.input_size, config.positive_labels)
    torch.manual_seed(0)
    whole, history = loop.train(config, samples, torch.device("cpu"))

    real_save = loop._save

    def crash_after_first(*args: object, **kwargs: object) -> None:
        real_save(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        loop.train(config, samples, torch.device("cpu"))
    monkeypatch.setattr(loop, "_save", real_save)
    resumed, resumed_history = loop.train(config, samples, torch.device("cpu"), resume=True)
    assert resumed_history.steps == history.steps
    np.testing.assert_allclose(resumed_history.loss, history.loss, rtol=1e-4, atol=1e-5)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert json.dumps(resumed_history.as_dict())


def test_resume_without_checkpoint_is_an_error(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "ds")
    config = load_config(write_config(tmp_path / "t.yaml", dataset, tmp_path / "m" / "t" / "1.0"))
    with pytest.raises(TrainingError, match="no checkpoint"):
        loop.train(config, [], torch.device("cpu"), resume=True)


REFERENCE = Path(__file__).resolve().parent.parent / "models" / "mias-unet" / "1.0.0"


@pytest.mark.skipif(not (REFERENCE / "weights.pt").exists(), reason="reference model not built")
def test_shipped_reference_model_is_served_and_documented() -> None:
    """models/mias-unet/1.0.0 loads through the registry and says what it was trained on."""
    model = load_model(REFERENCE.parent.parent, "mias-unet/1.0.0")
    assert model.spec.input_size == (256, 160)
    spec = yaml.safe_load((REFERENCE / "model.yaml").read_text())
    trained = spec["evaluation"]["trained_on"]
    assert (trained["dataset_id"], trained["splits"]) == ("mias-dev", ["train"])
    assert spec["evaluation"]["validation"]["split"] == "val"
    card = (REFERENCE / "MODEL_CARD.md").read_text()
    assert "NOT FOR CLINICAL USE" in card and "Suckling" in card and "95 % CI" in card
    assert (REFERENCE / "weights.pt").stat().st_size < 5_000_000


def test_patient_folds_keep_a_woman_together_and_spread_positives(tmp_path: Path) -> None:
    records = read_manifest(make_dataset(tmp_path / "ds", patients=10))
    folds = patient_folds(records, 3, seed=0)
    by_patient: dict[str, set[int]] = {}
    for record, fold in zip(records, folds, strict=True):
        by_patient.setdefault(record.patient_id, set()).add(fold)
    assert all(len(f) == 1 for f in by_patient.values())
    positive_folds = {f for r, f in zip(records, folds, strict=True) if r.label != "normal"}
    assert positive_folds == {0, 1, 2}
    assert folds == patient_folds(records, 3, seed=0)
    with pytest.raises(TrainingError, match="at least 2"):
        patient_folds(records, 1, seed=0)


def test_lesion_net_options_are_additive() -> None:
    plain = LesionNet((4, 4, 8, 8, 16, 4), top_k=4)
    both = LesionNet((4, 4, 8, 8, 16, 4), top_k=4, global_head=True, flip_average=True)
    extra = set(both.state_dict()) - set(plain.state_dict())
    assert extra == {"global_head.weight", "global_head.bias"}
    both.load_state_dict(plain.state_dict(), strict=False)  # old weights fit the new trunk
    both.eval()
    image = torch.rand(2, 1, 64, 48)
    with torch.no_grad():
        heat, logit = both(image)
        heat_flipped, logit_flipped = both(image.flip(2))
    assert heat.shape == (2, 1, 64, 48) and logit.shape == (2,)
    torch.testing.assert_close(logit, logit_flipped, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(heat, heat_flipped.flip(2), rtol=1e-4, atol=1e-5)


def test_cross_validation_is_recorded_and_the_model_served(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "ds", patients=10)
    out = tmp_path / "models" / "tiny" / "0.2.0"
    options = {
        "cv_folds": 2,
        "global_head": True,
        "flip_average": True,
        "augment": {"rotate_degrees": 5.0, "erase": 0.5},
    }
    config = load_config(write_config(tmp_path / "cv.yaml", dataset, out, **options))
    only = run_training(config, device_name="cpu", cv_only=True)
    assert not out.exists() and only["cross_validation"]["folds"] == 2
    saved = json.loads((config.run_dir / "cv.json").read_text())
    saved["fold_auc"] = [0.25, 0.75]  # marks the saved result: the same recipe reuses it
    (config.run_dir / "cv.json").write_text(json.dumps(saved))
    run_training(config, device_name="cpu")
    spec = yaml.safe_load((out / "model.yaml").read_text())
    assert spec["network"]["kwargs"]["global_head"] is True
    cv = spec["evaluation"]["training"]["cross_validation"]
    assert cv["images"] == 16 and cv["fold_auc"] == [0.25, 0.75]
    assert "pooled_auc_without_flip" in cv
    card = (out / "MODEL_CARD.md").read_text()
    assert "patient-level folds" in card and "up-down mirror" in card
    model = load_model(tmp_path / "models", "tiny/0.2.0")
    pixels = np.asarray(Image.open(dataset / "images" / "s01R.png"), np.float32) / 255
    assert 0.0 <= model.predict(pixels, "R").score <= 1.0
    with pytest.raises(TrainingError, match="cv_folds"):
        load_config(write_config(tmp_path / "bad.yaml", dataset, out, cv_folds=1))


def test_synthetic_recipe_writes_the_demonstration_model_folder(tmp_path: Path) -> None:
    """``python -m node.training.synthetic``, tiny: the folder the shipped synthetic-unet has,
    served by the registry as written, with its held-out figures in model.yaml and the card."""
    out = tmp_path / "models" / "synthetic-test" / "0.0.1"
    args = ["--out", str(out), "--steps", "2", "--batch", "2", "--pool", "4"]
    synthetic.main([*args, "--calibration", "4", "--heldout", "3"])
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "model.yaml", "weights.pt"]
    spec = yaml.safe_load((out / "model.yaml").read_text())
    shipped = yaml.safe_load((SHIPPED_SYNTHETIC / "model.yaml").read_text())
    shipped["evaluation"].pop("validation", None)  # added later by `evaluate --record`
    assert list(spec) == list(shipped) and list(spec["evaluation"]) == list(shipped["evaluation"])
    assert spec["network"] == shipped["network"] and spec["input_size"] == shipped["input_size"]
    assert spec["training_data"].startswith("synthetic phantoms only")
    assert load_model(tmp_path / "models", "synthetic-test/0.0.1").spec.version == "0.0.1"
    card = (out / "MODEL_CARD.md").read_text()
    assert "NOT FOR CLINICAL USE" in card and "| auc_mass_vs_normal |" in card
    headings = [line for line in card.splitlines() if line.startswith("#")]
    shipped_card = (
        (SHIPPED_SYNTHETIC / "MODEL_CARD.md").read_text().split(VALIDATION_HEADING)[0].splitlines()
    )
    assert headings[1:] == [line for line in shipped_card if line.startswith("#")][1:]
