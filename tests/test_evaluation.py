"""Evaluation: metrics, FROC, calibration, refusal of training images, the evaluate command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from node.cli import main
from node.datasets.manifest import Lesion, read_manifest, write_manifest
from node.errors import EvaluationRefused
from node.evaluation.calibration import reliability
from node.evaluation.froc import ScoredFinding, froc
from node.evaluation.run import score_split
from node.stats.intervals import at_threshold, patient_bootstrap_auc, wilson
from node.training.config import load_config
from node.training.run import run_training
from tests.test_training import make_dataset, write_config


def test_wilson_interval_known_value() -> None:
    low, high = wilson(8, 10)  # type: ignore[misc]
    assert math.isclose(low, 0.4902, abs_tol=1e-3) and math.isclose(high, 0.9433, abs_tol=1e-3)
    assert wilson(0, 0) is None


def test_rates_at_threshold() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.1, 0.2])
    labels = np.array([True, True, True, False, False, False])
    r = at_threshold(scores, labels, 0.5)
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (2, 1, 2, 1)
    assert r["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert r["ppv"]["value"] == pytest.approx(2 / 3) and r["npv"]["value"] == pytest.approx(2 / 3)


def test_patient_bootstrap_interval_brackets_the_auc() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(80) < 0.4
    scores = labels + rng.normal(0, 0.8, 80)
    patients = [f"p{i // 2}" for i in range(80)]
    low, high = patient_bootstrap_auc(scores, labels, patients, n_boot=300)
    assert 0.5 < low < high < 1.0


def test_froc_hits_within_radius_factor() -> None:
    lesions = [[Lesion(50, 50, 10)], []]
    findings = [
        [ScoredFinding(55, 50, 0.9), ScoredFinding(64, 50, 0.5)],  # hit; 14 px: hit only at 1.5x
        [ScoredFinding(10, 10, 0.7)],  # false positive on a normal image
    ]
    strict = froc(findings, lesions, hit_factor=1.0)
    assert strict.lesions == 1 and strict.sensitivity_at(0.0) == 1.0
    assert strict.fp_per_image[-1] == pytest.approx(1.0)  # 0.7 and 0.5 both miss
    loose = froc(findings, lesions, hit_factor=1.5)
    assert loose.fp_per_image[-1] == pytest.approx(0.5)  # 14 <= 15: a second hit, not an FP


def test_reliability_and_ece() -> None:
    scores = np.array([0.1, 0.1, 0.9, 0.9])
    labels = np.array([False, False, True, False])
    cal = reliability(scores, labels, bins=10)
    assert cal.counts[1] == 2 and cal.counts[9] == 2
    assert cal.ece == pytest.approx(0.5 * 0.1 + 0.5 * 0.4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    dataset = make_dataset(root / "ds", patients=10)
    for version in ("0.1.0", "0.2.0"):
        out = root / "models" / "tiny" / version
        run_training(
            load_config(write_config(root / f"{version}.yaml", dataset, out)), device_name="cpu"
        )
    return dataset, root / "models"


def test_refuses_the_split_the_model_trained_on(trained: tuple[Path, Path]) -> None:
    dataset, models = trained
    with pytest.raises(EvaluationRefused, match="trained on split 'train'"):
        score_split(models, "tiny/0.1.0", dataset, "train")


def test_refuses_training_images_moved_to_another_split(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    dataset, models = trained
    records = read_manifest(dataset)
    moved = [r.with_split("val") if r.image_id == "s00L" else r for r in records]
    copy = tmp_path / "ds"
    copy.mkdir()
    (copy / "images").symlink_to(dataset / "images")
    write_manifest(copy, moved)
    (copy / "dataset.yaml").write_text(yaml.safe_dump({"id": "another-id"}))
    with pytest.raises(EvaluationRefused, match="same pixels"):
        score_split(models, "tiny/0.1.0", copy, "val")


def test_evaluate_command_writes_report_and_records(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    dataset, models = trained
    out = tmp_path / "report"
    args = [
        "evaluate",
        "--model",
        "tiny/0.2.0",
        "--baseline",
        "tiny/0.1.0",
        "--dataset",
        str(dataset),
    ]
    args += ["--models-dir", str(models), "--out", str(out), "--bootstrap", "200", "--record"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["images"] == 4 and report["baseline"]["model"] == "tiny/0.1.0"
    assert {"abnormal_vs_normal", "malignant_vs_rest"} == set(report["model"]["auc_by_task"])
    for name in ("roc.png", "froc.png", "calibration.png", "errors.png", "report.md"):
        assert (out / name).stat().st_size > 500
    spec = yaml.safe_load((models / "tiny" / "0.2.0" / "model.yaml").read_text())
    assert spec["evaluation"]["validation"]["split"] == "val"
    assert "95 % CI" in (models / "tiny" / "0.2.0" / "MODEL_CARD.md").read_text()
