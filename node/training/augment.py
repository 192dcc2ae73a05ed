"""Augmentation suited to mammograms, from MONAI dictionary transforms.

- No left-right flip: ``prepare`` already normalised laterality (chest wall on the left); a
  mirrored breast is something the node is never served.
- Vertical flip: MLO/CC positioning varies up-down more than anything else.
- Small affine (rotation, scale, shift): compression and positioning differ between exams.
- Intensity (scale, gamma, noise): detectors and processing differ between vendors.
- Random erasing (``erase`` > 0): a few patches of the image set to the median tissue level,
  so the image score cannot lean on one region only. The heatmap target is left as it is.
Geometric transforms move the image and its lesion heatmap together.
"""

from __future__ import annotations

import math
from typing import Any

from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandCoarseDropoutd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
)

from node.training.config import AugmentConfig


def build_augment(
    config: AugmentConfig, size: tuple[int, int], crop: tuple[int, int] | None
) -> Compose:
    """Transforms over {"image", "heat", "label"} arrays of shape (1, H, W); with ``crop``,
    the result is a list of one sample (MONAI's cropping-by-label convention)."""
    keys = ["image", "heat"]
    steps: list[Any] = []
    if crop is not None:
        # Crops centred on lesion pixels twice as often as on background, as in the synthetic
        # model's recipe: a lesion is a few hundred of 40,000 pixels, so random crops would
        # rarely show one. Cropping first keeps the other transforms cheap.
        steps.append(
            RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=crop,
                pos=2.0,
                neg=1.0,
                num_samples=1,
                allow_smaller=True,
            )
        )
    size = crop or size
    steps += [
        RandFlipd(keys=keys, prob=config.vertical_flip, spatial_axis=0),
        RandAffined(
            keys=keys,
            prob=0.8,
            rotate_range=(math.radians(config.rotate_degrees),),
            scale_range=(config.scale, config.scale),
            translate_range=(config.translate * size[0], config.translate * size[1]),
            mode=("bilinear", "bilinear"),
            padding_mode="zeros",
        ),
        RandScaleIntensityd(keys=["image"], factors=config.intensity, prob=0.8),
        RandAdjustContrastd(keys=["image"], gamma=config.gamma, prob=0.5),
        RandGaussianNoised(keys=["image"], std=config.noise, prob=0.5),
    ]
    if config.erase > 0:
        steps.append(
            RandCoarseDropoutd(
                keys=["image"],
                holes=1,
                max_holes=3,
                spatial_size=(size[0] // 8, size[1] // 8),
                max_spatial_size=(size[0] // 4, size[1] // 4),
                fill_value=0.5,  # prepare scales the median tissue to 0.5
                prob=config.erase,
            )
        )
    return Compose(steps)
