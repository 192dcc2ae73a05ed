"""The networks a model.yaml may name, built from MONAI parts.

``LesionNet`` is a small 2-D U-Net (MONAI ``BasicUNet``) whose output is a lesion heatmap
logit per pixel. The image-level malignancy logit is an affine function of the mean of the top-k
heatmap logits: an image is as suspicious as its most suspicious spot, which keeps the image
score and the findings consistent. The affine (``image_scale``, ``image_bias``) is fitted after
training on held-out data (Platt scaling), so its sigmoid is a calibrated probability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.networks.nets import BasicUNet
from torch import nn


class LesionNet(nn.Module):
    """Heatmap logits (N, 1, H, W) and image logits (N,) from a grayscale image (N, 1, H, W)."""

    def __init__(self, features: Sequence[int] = (8, 16, 32, 64, 128, 8), top_k: int = 16) -> None:
        super().__init__()
        if len(features) != 6 or any(int(f) < 1 for f in features):
            raise ValueError(f"features needs 6 positive channel counts, got {list(features)}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k = int(top_k)
        # Batch norm (not BasicUNet's default instance norm): statistics that do not depend on
        # the image, so training on crops and inferring on whole images agree.
        self.unet = BasicUNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            features=tuple(int(f) for f in features),
            norm=("batch", {"affine": True}),
        )
        self.image_scale = nn.Parameter(torch.tensor(1.0))
        self.image_bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heatmap = self.unet(image)
        flat = heatmap.flatten(1)
        k = min(self.top_k, flat.shape[1])
        peak = flat.topk(k, dim=1).values.mean(dim=1)
        return heatmap, self.image_scale * peak + self.image_bias


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"LesionNet": LesionNet}


def build_network(architecture: str, kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate a network named in model.yaml; unknown names and arguments are errors."""
    try:
        factory = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"unknown network architecture {architecture!r}; known: {sorted(ARCHITECTURES)}"
        ) from None
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad kwargs for {architecture}: {exc}") from exc
