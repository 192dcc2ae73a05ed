"""The lesion head: cell labels from lesion circles, fitting, storage, serving, FROC rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from node.datasets.manifest import Lesion
from node.domain import ExamImage
from node.errors import InvalidModelConfig
from node.evaluation.froc import ScoredFinding as EvaluatedFinding
from node.evaluation.froc import froc
from node.inference.breast import inside, source_breast_mask
from node.inference.contralateral import ContralateralModel, Features, Prepared, grid_mask
from node.inference.lesion import LesionHead, cell_vectors
from node.models.registry import LESION_CELLS, load_model
from node.training.lesion import IGNORED, NEGATIVE, POSITIVE, CellData, cell_labels, fit_cells
from node.training.lesion_cv import ScoredFinding, froc_sensitivity
from tests.test_contralateral import film, head, write_model

MID, LATE = 6, 5  # channels of the toy feature maps
SHAPE = (8, 6)  # mid grid; late is half of it


def prepared(flipped: bool = False) -> Prepared:
    """A 400 x 300 source whose breast box is rows 0-400, columns 0-240 (canonical 128 x 96)."""
    return Prepared(
        torch.empty(0),
        np.ones((128, 96), bool),
        flipped,
        (0, 400, 0, 240),
        (400, 300),
        np.ones((400, 300), bool),
    )


def toy_features(rng: np.random.Generator, lesion_cell: tuple[int, int] | None) -> Features:
    mid = rng.normal(size=(MID, *SHAPE)).astype(np.float32)
    late = rng.normal(size=(LATE, SHAPE[0] // 2, SHAPE[1] // 2)).astype(np.float32)
    if lesion_cell is not None:
        mid[0, lesion_cell[0], lesion_cell[1]] += 6.0  # the lesion lights one channel up
    return Features({"mid": mid, "late": late}, {"mid": np.ones(SHAPE, bool)})


class TestCellLabels:
    def test_cells_inside_the_circle_are_lesion_and_its_rim_is_ignored(self) -> None:
        grid = np.ones(SHAPE, bool)
        # cell (2, 1) centre: row 2.5 * 50 = 125, column 1.5 * 40 = 60
        labels = cell_labels(prepared(), grid, [Lesion(60.0, 125.0, 30.0)], True).reshape(SHAPE)
        assert labels[2, 1] == POSITIVE
        assert labels[3, 1] == IGNORED  # 50 px away: beyond 1 radius, within 2
        assert labels[7, 5] == NEGATIVE

    def test_a_right_breast_maps_its_columns_mirrored(self) -> None:
        grid = np.ones(SHAPE, bool)
        # mirrored: canonical column 60 lies at source column 299 - 60 = 239
        labels = cell_labels(prepared(True), grid, [Lesion(239.0, 125.0, 10.0)], True)
        assert labels.reshape(SHAPE)[2, 1] == POSITIVE and (labels == POSITIVE).sum() == 1

    def test_a_lesion_smaller_than_a_cell_still_marks_its_cell(self) -> None:
        labels = cell_labels(prepared(), np.ones(SHAPE, bool), [Lesion(62.0, 127.0, 1.0)], True)
        assert labels.reshape(SHAPE)[2, 1] == POSITIVE

    def test_an_abnormal_image_without_a_place_teaches_nothing(self) -> None:
        assert (cell_labels(prepared(), np.ones(SHAPE, bool), [], True) == IGNORED).all()

    def test_a_normal_breast_is_all_negative_outside_the_background(self) -> None:
        grid = np.ones(SHAPE, bool)
        grid[:, -1] = False
        labels = cell_labels(prepared(), grid, [], False).reshape(SHAPE)
        assert (labels[:, :-1] == NEGATIVE).all() and (labels[:, -1] == IGNORED).all()


def toy_data(n: int = 12, seed: int = 0) -> tuple[CellData, list[np.ndarray], np.ndarray]:
    """Women of two breasts; the odd breast of the first half has a lesion at cell (3, 2)."""
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for k in range(n):
        abnormal = k % 2 == 1 and k < n // 2
        feats.append(toy_features(rng, (3, 2) if abnormal else None))
        lesions = [Lesion(2.5 * 40, 3.5 * 50, 20.0)] if abnormal else []
        labels.append(cell_labels(prepared(), np.ones(SHAPE, bool), lesions, abnormal))
    partner = np.array([k + 1 if k % 2 == 0 else k - 1 for k in range(n)])
    return CellData(feats, [prepared()] * n, [()] * n), labels, partner


def test_the_fitted_head_peaks_on_the_lesion_cell_of_a_new_breast() -> None:
    data, labels, partner = toy_data()
    weight, bias = fit_cells(data, labels, partner, range(len(labels)), 0.01, 0)
    lesion = LesionHead(weight, bias, 1.0)
    rng = np.random.default_rng(7)
    this, other = toy_features(rng, (5, 4)), toy_features(rng, None)
    grid = lesion.grid(this, other)
    row, column = np.unravel_index(int(np.argmax(grid)), grid.shape)
    assert (int(row), int(column)) == (5, 4)


def test_fitting_without_lesion_cells_is_refused() -> None:
    data, labels, partner = toy_data()
    with pytest.raises(ValueError, match="both"):
        fit_cells(
            data,
            [np.where(lab == POSITIVE, NEGATIVE, lab) for lab in labels],
            partner,
            range(len(labels)),
            0.01,
            0,
        )


def test_a_cell_vector_carries_its_late_parent() -> None:
    f = toy_features(np.random.default_rng(0), None)
    cells = cell_vectors(f)
    assert cells.shape == (SHAPE[0] * SHAPE[1], MID + LATE)
    assert np.array_equal(cells[3 * SHAPE[1] + 5, MID:], f.maps["late"][:, 1, 2])


def test_a_lesion_head_survives_weights_pt(tmp_path: Path) -> None:
    original = LesionHead(np.arange(4.0), 0.5, 1.7, (1.1, -0.2), 0.3)
    torch.save(original.to_tensors("lesion"), tmp_path / "w.pt")
    again = LesionHead.from_tensors(torch.load(tmp_path / "w.pt", weights_only=True), "lesion")
    assert np.array_equal(again.weight, original.weight)
    assert (again.bias, again.beta, again.platt, again.threshold) == (0.5, 1.7, (1.1, -0.2), 0.3)


def test_the_froc_rule_is_the_evaluators() -> None:
    rng = np.random.default_rng(3)
    lesions = [[Lesion(50.0, 50.0, 10.0)] if i % 3 == 0 else [] for i in range(30)]
    found = [
        [
            (float(rng.uniform(0, 100)), float(rng.uniform(0, 100)), float(rng.random()))
            for _ in range(3)
        ]
        for _ in range(30)
    ]
    for i in range(0, 30, 6):
        found[i][0] = (52.0, 49.0, 0.9)  # some hits
    curve = froc([[EvaluatedFinding(*f) for f in fs] for fs in found], lesions, 1.5)
    for rate in (0.5, 1.0, 2.0):
        mine = froc_sensitivity(
            [[ScoredFinding(*f) for f in fs] for fs in found], lesions, 1.5, rate
        )
        assert mine == pytest.approx(curve.sensitivity_at(rate))


def lesion_model(tmp_path: Path) -> ContralateralModel:
    folder = write_model(tmp_path, head={"pca": 4, "C": 0.003, "lesion": {"cells": LESION_CELLS}})
    rng = np.random.default_rng(0)
    state = torch.load(folder / "weights.pt", weights_only=True)
    lesion = LesionHead(rng.normal(size=112 + 320) * 0.05, 0.0, 0.8, (1.0, 0.0), 0.4)
    torch.save({**state, **lesion.to_tensors("lesion")}, folder / "weights.pt")
    model = load_model(tmp_path, "demo/1.0.0")
    assert isinstance(model, ContralateralModel)
    return model


def test_findings_come_from_the_lesion_map_inside_the_breast(tmp_path: Path) -> None:
    model = lesion_model(tmp_path)
    assert model.lesion is not None
    exam = [ExamImage(film(False, 1), "R", "MLO"), ExamImage(film(True, 2), "L", "MLO")]
    both = model.predict_exam(exam)
    alone = model.predict(film(True, 3), "L")
    assert [p.compared for p in both] == [True, True] and alone.compared is False
    for prediction, image in zip([*both, alone], [*exam, exam[1]], strict=True):
        mask = source_breast_mask(np.asarray(image.pixels), image.laterality == "R")
        assert prediction.heatmap[~mask].max() == 0.0
        assert prediction.findings and all(
            inside(mask, f.row, f.column) for f in prediction.findings
        )
        # the map places the image's score, it does not add to it (upsampling only smooths)
        assert prediction.findings[0].score <= prediction.score + 1e-9


def test_weights_without_the_lesion_head_model_yaml_names_are_refused(tmp_path: Path) -> None:
    write_model(tmp_path, head={"pca": 4, "C": 0.003, "lesion": {"cells": LESION_CELLS}})
    with pytest.raises(InvalidModelConfig, match=r"heads model\.yaml names"):
        load_model(tmp_path, "demo/1.0.0")


def test_a_lesion_head_of_other_cells_is_refused(tmp_path: Path) -> None:
    write_model(tmp_path, head={"pca": 4, "C": 0.003, "lesion": {"cells": "whole image"}})
    with pytest.raises(InvalidModelConfig, match="head lesion must be"):
        load_model(tmp_path, "demo/1.0.0")


def test_grid_mask_of_the_toy_shape_is_the_breast() -> None:
    assert grid_mask(np.ones((128, 96), bool), SHAPE).all()
    assert head().mu.shape == (544,)


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "mias-contralateral" / "1.1.0"


@pytest.mark.skipif(not (SHIPPED / "weights.pt").exists(), reason="the model is not built")
def test_the_shipped_model_serves_its_lesion_head_and_documents_it() -> None:
    model = load_model(SHIPPED.parent.parent, "mias-contralateral/1.1.0")
    assert isinstance(model, ContralateralModel) and model.lesion is not None
    assert model.lesion.weight.shape == (112 + 320,) and model.lesion.beta > 0
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    for words in (
        "NOT FOR CLINICAL USE",
        "Lesion head: cross-validation inside the train split",
        "class-activation map of the exam head",
        "calcification",
        "CC against MLO",
    ):
        assert words in card
