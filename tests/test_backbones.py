"""The served backbone folds its batch norms into the convolutions: the same features as the
network the weights file defines, to float rounding, at every tap and input size (odd sizes
exercise the asymmetric 'SAME' padding at stride 2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from node.inference.backbones import load_backbone


@pytest.mark.parametrize("shape", [(1, 1, 128, 96), (2, 1, 97, 131)])
def test_folded_batch_norms_give_the_same_features(shape: tuple[int, int, int, int]) -> None:
    folded = load_backbone("efficientnet-lite0")
    unfolded = load_backbone("efficientnet-lite0", fold=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in unfolded.modules())
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours, reference = folded(x), unfolded(x)
    assert ours.keys() == reference.keys() == {"mid", "late"}
    for tap in ours:
        assert ours[tap].shape == reference[tap].shape
        scale = float(reference[tap].abs().max())
        assert float((ours[tap] - reference[tap]).abs().max()) <= 1e-5 * max(scale, 1.0)
