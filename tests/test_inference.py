"""Model registry, the shipped synthetic model, and prediction over files (no mocks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from node.errors import InvalidModelConfig, ModelNotFound
from node.inference.predict import predict_paths
from node.inference.runner import LoadedModel, chest_wall_on_right
from node.models.registry import device_uid, list_models, load_model, version_key
from node.synthetic.phantom import make_phantom

MODELS = Path(__file__).resolve().parent.parent / "models"
SHIPPED = MODELS / "synthetic-unet" / "0.1.0"


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model(MODELS, "synthetic-unet/0.1.0")


def presentation(seed: int, **kwargs: object) -> tuple[np.ndarray, object]:
    p = make_phantom(seed, **kwargs)  # type: ignore[arg-type]
    return p.pixels.astype(np.float32) / ((1 << p.bits_stored) - 1), p


def copy_model(tmp: Path, model_id: str, version: str) -> Path:
    """A copy of the shipped model under another id/version, its model.yaml kept consistent."""
    folder = tmp / model_id / version
    shutil.copytree(SHIPPED, folder)
    raw = yaml.safe_load((folder / "model.yaml").read_text())
    raw.update(id=model_id, version=version, device_uid=device_uid(model_id, version))
    (folder / "model.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def edit_yaml(folder: Path, **changes: object) -> None:
    raw = yaml.safe_load((folder / "model.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            del raw[key]
        else:
            raw[key] = value
    (folder / "model.yaml").write_text(yaml.safe_dump(raw))


class TestRegistry:
    def test_shipped_model_is_listed_with_its_identity(self) -> None:
        (spec,) = [s for s in list_models(MODELS) if s.model_id == "synthetic-unet"]
        assert spec.version == "0.1.0" and spec.manufacturer == "mammo-node"
        assert spec.device_uid == device_uid("synthetic-unet", "0.1.0")
        assert "not for clinical use" in spec.intended_use.lower()
        assert (SHIPPED / "weights.pt").stat().st_size < 5 * 1024 * 1024
        assert "NOT FOR CLINICAL USE" in (SHIPPED / "MODEL_CARD.md").read_text()

    def test_newest_version_is_chosen_numerically(self, tmp_path: Path) -> None:
        copy_model(tmp_path, "demo", "0.9.0")
        copy_model(tmp_path, "demo", "0.10.0")
        assert load_model(tmp_path, "demo").spec.version == "0.10.0"
        assert load_model(tmp_path, "demo/0.9.0").spec.version == "0.9.0"
        assert [s.version for s in list_models(tmp_path)] == ["0.9.0", "0.10.0"]
        assert version_key("0.10.0") > version_key("0.9.1")

    def test_unknown_model_names_what_exists(self, tmp_path: Path) -> None:
        copy_model(tmp_path, "demo", "1.0.0")
        with pytest.raises(ModelNotFound, match=r"available: demo/1\.0\.0"):
            load_model(tmp_path, "other")
        with pytest.raises(ModelNotFound, match=r"demo/2\.0\.0"):
            load_model(tmp_path, "demo/2.0.0")
        with pytest.raises(ModelNotFound, match="none"):
            load_model(tmp_path / "empty", "demo")

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"licence": None}, r"missing keys \['licence'\]"),
            ({"colour": "blue"}, r"unknown keys \['colour'\]"),
            ({"device_uid": "1.2.3"}, "device_uid must be"),
            ({"id": "other"}, "lies in demo/1.0.0"),
            ({"operating_point": 1.5}, "operating_point must lie"),
            ({"intended_use": "screening"}, "not for clinical use"),
            ({"input_size": [256]}, "input_size"),
            ({"network": {"architecture": "Nope", "kwargs": {}}}, "unknown network"),
            ({"preprocessing": {"orientation": "none"}}, "preprocessing must be"),
            ({"name": ""}, "name must be a non-empty str"),
        ],
    )
    def test_invalid_model_yaml_is_refused_clearly(
        self, tmp_path: Path, changes: dict[str, object], message: str
    ) -> None:
        folder = copy_model(tmp_path, "demo", "1.0.0")
        edit_yaml(folder, **changes)
        with pytest.raises(InvalidModelConfig, match=message):
            load_model(tmp_path, "demo")

    def test_weights_that_do_not_fit(self, tmp_path: Path) -> None:
        folder = copy_model(tmp_path, "demo", "1.0.0")
        raw = yaml.safe_load((folder / "model.yaml").read_text())
        raw["network"]["kwargs"]["features"] = [4, 8, 16, 32, 64, 4]
        (folder / "model.yaml").write_text(yaml.safe_dump(raw))
        with pytest.raises(InvalidModelConfig, match="do not fit"):
            load_model(tmp_path, "demo")
        (folder / "weights.pt").write_bytes(b"garbage")
        with pytest.raises(InvalidModelConfig, match="do not fit"):
            load_model(tmp_path, "demo")
        (folder / "weights.pt").unlink()
        with pytest.raises(ModelNotFound, match="missing"):
            load_model(tmp_path, "demo")


class TestPredict:
    def test_scores_and_heatmap_shape(self, model: LoadedModel) -> None:
        pixels, _ = presentation(1, rows=600, columns=500, lesions=1)
        prediction = model.predict(pixels, "L")
        assert 0.0 <= prediction.score <= 1.0
        assert prediction.heatmap.shape == pixels.shape
        assert prediction.heatmap.dtype == np.float32
        assert 0.0 <= prediction.heatmap.min() and prediction.heatmap.max() <= 1.0
        for f in prediction.findings:
            assert 0.0 <= f.score <= 1.0 and f.radius > 0
            assert 0 <= f.column < 500 and 0 <= f.row < 600

    def test_one_big_mass_is_found_near_its_truth(self, model: LoadedModel) -> None:
        hits = 0
        seeds = range(100, 106)
        for seed in seeds:
            laterality = "L" if seed % 2 else "R"
            pixels, phantom = presentation(seed, laterality=laterality, lesions=1)
            (truth,) = phantom.lesions  # type: ignore[attr-defined]
            prediction = model.predict(pixels, laterality)
            if any(
                np.hypot(f.column - truth.column, f.row - truth.row) <= 2 * truth.radius
                for f in prediction.findings
            ):
                hits += 1
        assert hits >= 4, f"found {hits} of {len(seeds)} masses"

    def test_mass_scores_above_normal_on_average(self, model: LoadedModel) -> None:
        with_mass = [
            model.predict(presentation(s, lesions=1)[0], "L").score for s in range(200, 204)
        ]
        normal = [model.predict(presentation(s, lesions=0)[0], "L").score for s in range(200, 204)]
        assert np.mean(with_mass) > np.mean(normal)

    def test_unknown_laterality_detects_the_chest_wall(self, model: LoadedModel) -> None:
        pixels, _ = presentation(7, laterality="R", lesions=1)
        assert chest_wall_on_right(pixels)
        assert not chest_wall_on_right(pixels[:, ::-1])
        known, unknown = model.predict(pixels, "R"), model.predict(pixels, "")
        np.testing.assert_allclose(known.heatmap, unknown.heatmap)
        assert known.score == pytest.approx(unknown.score)

    def test_predict_paths_rows_and_error_rows(self, model: LoadedModel, tmp_path: Path) -> None:
        pixels, _ = presentation(3, rows=512, columns=416, lesions=1)
        Image.fromarray((pixels * 65535).astype(np.uint16)).save(tmp_path / "a.png")
        (tmp_path / "b.txt").write_text("not an image")
        rows = list(predict_paths([tmp_path / "a.png", tmp_path / "b.txt"], model))
        good, bad = rows
        assert set(good) == {"path", "score", "findings"} and 0 <= good["score"] <= 1
        for f in good["findings"]:
            assert set(f) == {"x", "y", "radius", "score"}
            assert 0 <= f["x"] < 416 and 0 <= f["y"] < 512
        assert bad["path"].endswith("b.txt") and "not a DICOM" in bad["error"]
        assert set(bad) == {"path", "error"}
