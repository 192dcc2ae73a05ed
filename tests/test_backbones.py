"""The served backbone folds its batch norms into the convolutions: the same features as the
network the weights file defines, to float rounding, at every tap and input size (odd sizes
exercise the asymmetric 'SAME' padding at stride 2). A stride-2 block pads its narrow input
rather than its wide expansion, with the same numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from node.inference.backbones import _MBConv, _same_pad, load_backbone


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


def padded_expansion(block: _MBConv, x: torch.Tensor) -> torch.Tensor:
    """The textbook order: expand, then pad the expansion ('SAME'), then the depthwise step."""
    y = F.relu6(block._bn0(block._expand_conv(x)))
    return F.relu6(block._bn1(block._depthwise_conv(_same_pad(y, block.kernel, block.stride))))


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("size", [(64, 48), (63, 49), (65, 66)])
def test_padding_the_input_instead_of_the_expansion_gives_the_same_features(
    fold: bool, size: tuple[int, int]
) -> None:
    """Every stride-2 block (kernels 3 and 5), at even and odd sizes: the same numbers (to the
    rounding of a convolution library that may block a wider image differently)."""
    net = load_backbone("efficientnet-lite0", fold=fold)
    strided = [b for b in net._blocks if isinstance(b, _MBConv) and b.stride == 2]
    assert {b.kernel for b in strided} == {3, 5}
    generator = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for block in strided:
            x = torch.rand((2, block._expand_conv.in_channels, *size), generator=generator)
            ours = block._bn2(block._project_conv(_depthwise_of(block, x)))
            reference = block._bn2(block._project_conv(padded_expansion(block, x)))
            assert torch.equal(ours, block(x))
            assert ours.shape == reference.shape
            scale = max(float(reference.abs().max()), 1.0)
            assert float((ours - reference).abs().max()) <= 1e-6 * scale


def _depthwise_of(block: _MBConv, x: torch.Tensor) -> torch.Tensor:
    """The block's own path up to the depthwise step (its forward without the projection)."""
    captured: list[torch.Tensor] = []
    handle = block._depthwise_conv.register_forward_hook(
        lambda _module, _inputs, output: captured.append(F.relu6(block._bn1(output)))
    )
    try:
        block(x)
    finally:
        handle.remove()
    return captured[0]
