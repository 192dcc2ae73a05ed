"""The networks a model.yaml may name, built from MONAI parts.

``LesionNet`` is a small 2-D U-Net (MONAI ``BasicUNet``) whose output is a lesion heatmap
logit per pixel. The image-level malignancy logit is an affine function of the mean of the top-k
heatmap logits: an image is as suspicious as its most suspicious spot, which keeps the image
score and the findings consistent. The affine (``image_scale``, ``image_bias``) is fitted after
training on held-out data (Platt scaling), so its sigmoid is a calibrated probability.

Two options (off by default, so older model folders load unchanged):
- ``global_head``: a linear read-out of the U-Net bottleneck, average- and max-pooled over the
  image, added to the top-k score. Diffuse signs (density, architectural distortion) that
  light no single spot can then still move the image score.
- ``flip_average``: in eval mode, the image is also scored flipped up-down (the flip the
  training augmentation uses; never left-right, which would undo the laterality
  normalisation) and heatmap and score are averaged over both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.networks.nets import BasicUNet
from torch import nn


class LesionNet(nn.Module):
    """Heatmap logits (N, 1, H, W) and image logits (N,) from a grayscale image (N, 1, H, W)."""

    def __init__(
        self,
        features: Sequence[int] = (8, 16, 32, 64, 128, 8),
        top_k: int = 16,
        global_head: bool = False,
        flip_average: bool = False,
    ) -> None:
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
        self.flip_average = bool(flip_average)
        self.global_head: nn.Linear | None = None
        self._bottleneck: list[torch.Tensor] = []
        if global_head:
            self.global_head = nn.Linear(2 * int(features[4]), 1)
            nn.init.zeros_(self.global_head.weight)
            nn.init.zeros_(self.global_head.bias)
            self.unet.down_4.register_forward_hook(self._keep_bottleneck)

    def _keep_bottleneck(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        self._bottleneck.append(output)

    def _single(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._bottleneck.clear()
        heatmap = self.unet(image)
        flat = heatmap.flatten(1)
        k = min(self.top_k, flat.shape[1])
        raw = flat.topk(k, dim=1).values.mean(dim=1)
        if self.global_head is not None:
            deep = self._bottleneck.pop()
            pooled = torch.cat([deep.mean(dim=(2, 3)), deep.amax(dim=(2, 3))], dim=1)
            raw = raw + self.global_head(pooled)[:, 0]
        self._bottleneck.clear()
        return heatmap, raw

    def raw_score(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits and the image score before Platt scaling (flip-averaged in eval mode
        when ``flip_average`` is on)."""
        heatmap, raw = self._single(image)
        if self.flip_average and not self.training:
            flipped_heat, flipped_raw = self._single(image.flip(2))
            heatmap = 0.5 * (heatmap + flipped_heat.flip(2))
            raw = 0.5 * (raw + flipped_raw)
        return heatmap, raw

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heatmap, raw = self.raw_score(image)
        return heatmap, self.image_scale * raw + self.image_bias


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
