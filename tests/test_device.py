"""Where the models compute: the device setting, an exam's views in one pass, CPU against GPU.

The CUDA tests run only where torch sees a GPU (a GPU worker host); everywhere else they are
skipped, and the CPU tests show the batched pass gives each image its own features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from node.config import Settings
from node.domain import ExamImage
from node.errors import ConfigError
from node.inference.backbones import load_backbone
from node.inference.contralateral import (
    ContralateralModel,
    batch_features,
    exam_features,
    features,
    prepare,
)
from node.inference.device import serving_device
from node.models.registry import load_model
from tests.test_contralateral import film, write_model

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="torch sees no CUDA GPU on this host")


def exam() -> list[ExamImage]:
    return [
        ExamImage(film(False, 1), "R", "CC"),
        ExamImage(film(True, 2), "L", "CC"),
        ExamImage(film(False, 3), "R", "MLO"),
        ExamImage(film(True, 4), "L", "MLO"),
    ]


class TestSetting:
    def test_auto_takes_the_gpu_when_torch_sees_one(self) -> None:
        assert serving_device("auto") == torch.device("cuda" if GPU else "cpu")
        assert serving_device(None) == serving_device("auto")
        assert Settings().device == "auto"

    @pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:x", "cpu ", "tpu"])
    def test_an_unknown_device_is_refused_at_start_up(self, name: str) -> None:
        with pytest.raises(ConfigError, match="device must be"):
            Settings(device=name)
        with pytest.raises(ConfigError, match="device must be"):
            serving_device(name)

    @pytest.mark.skipif(GPU, reason="this host has a GPU")
    def test_cuda_without_a_gpu_stops_start_up_instead_of_scoring_on_the_cpu(
        self, tmp_path: Path
    ) -> None:
        write_model(tmp_path)
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            load_model(tmp_path, "demo/1.0.0", device="cuda")

    def test_a_gpu_beyond_the_hosts_count_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="GPU"):
            serving_device(f"cuda:{torch.cuda.device_count() + 1}")


class TestOnePass:
    def test_the_model_computes_where_it_was_loaded(self, tmp_path: Path) -> None:
        write_model(tmp_path)
        model = load_model(tmp_path, "demo/1.0.0", device="cpu")
        assert isinstance(model, ContralateralModel)
        assert model.device == torch.device("cpu")
        assert model.backbone.grey_bias.device == torch.device("cpu")
        assert model.with_finding_threshold(0.01).device == model.device

    def test_an_exams_views_in_one_pass_get_each_its_own_features(self) -> None:
        backbone = load_backbone("efficientnet-lite0")
        prepared = [prepare(i.pixels, i.laterality, (256, 160)) for i in exam()]
        together = batch_features(backbone, prepared)
        for image, batched in zip(prepared, together, strict=True):
            alone = features(backbone, image)
            for tap, array in alone.maps.items():
                assert batched.maps[tap].shape == array.shape
                np.testing.assert_allclose(batched.maps[tap], array, rtol=1e-4, atol=1e-4)
                assert np.array_equal(batched.grids[tap], alone.grids[tap])
        # different images, different features: the pass did not mix up or repeat one
        assert not np.allclose(together[0].maps["late"], together[1].maps["late"])

    def test_on_the_cpu_each_view_has_a_pass_of_its_own(self) -> None:
        backbone = load_backbone("efficientnet-lite0")
        prepared = [prepare(i.pixels, i.laterality, (256, 160)) for i in exam()]
        for image, found in zip(prepared, exam_features(backbone, prepared), strict=True):
            alone = features(backbone, image)  # bit for bit what the node computed before
            assert all(np.array_equal(found.maps[t], alone.maps[t]) for t in alone.maps)


@needs_gpu
class TestOnTheGpu:
    def test_the_gpu_scores_an_exam_as_the_cpu_does(self, tmp_path: Path) -> None:
        write_model(tmp_path)
        cpu = load_model(tmp_path, "demo/1.0.0", device="cpu")
        gpu = load_model(tmp_path, "demo/1.0.0", device="cuda")
        assert isinstance(gpu, ContralateralModel)
        assert gpu.backbone.grey_bias.device.type == "cuda"
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"  # type: ignore[attr-defined]
        prepared = [prepare(i.pixels, i.laterality, (256, 160)) for i in exam()]
        one_pass = exam_features(gpu.backbone, prepared)
        for image, batched in zip(prepared, one_pass, strict=True):
            alone = features(gpu.backbone, image)
            for tap, array in alone.maps.items():
                np.testing.assert_allclose(batched.maps[tap], array, rtol=1e-3, atol=1e-3)
        on_cpu, on_gpu = cpu.predict_exam(exam()), gpu.predict_exam(exam())
        for a, b in zip(on_cpu, on_gpu, strict=True):
            assert a.compared == b.compared
            assert abs(a.score - b.score) < 1e-4  # full float32 on the GPU, as on the CPU
            np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-3)
