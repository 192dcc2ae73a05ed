"""Is this image fit to be scored? Checked before the model sees it, each 'no' with a reason.

A broken image must never yield an AI result: a 2 x 2 image, a High Bit that does not fit
Bits Stored, a header that declares no frames, or an image with no breast in it is skipped
with its reason (and an exam with no usable image fails with them). The header itself is
checked first (``node.dicom.header``), the pixel budget before decoding (``node.dicom.limits``).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pydicom

from node.dicom.header import describe, integer, number_of_frames
from node.errors import InvalidInput

#: Smallest Rows and Columns scored: far below any mammogram, far above a broken header.
MIN_IMAGE_DIMENSION: Final = 64
#: Presentation values (in [0, 1], brighter = denser) above the darkest by this much are tissue.
TISSUE_CONTRAST: Final = 0.05
#: An image with less tissue than this fraction of its area shows no breast.
MIN_TISSUE_FRACTION: Final = 0.005


def check_image_header(ds: pydicom.Dataset) -> None:
    """Before decoding: size, bit depth and frames as the Image Pixel Module requires."""
    rows, columns = integer(ds, "Rows"), integer(ds, "Columns")
    if rows is None or columns is None:
        raise InvalidInput(f"no {describe('Rows')} / {describe('Columns')}")
    if rows < MIN_IMAGE_DIMENSION or columns < MIN_IMAGE_DIMENSION:
        raise InvalidInput(
            f"image too small to score: {rows} x {columns}"
            f" (at least {MIN_IMAGE_DIMENSION} x {MIN_IMAGE_DIMENSION})"
        )
    allocated, stored, high = (
        integer(ds, "BitsAllocated"),
        integer(ds, "BitsStored"),
        integer(ds, "HighBit"),
    )
    if allocated not in (8, 16):
        raise InvalidInput(f"{describe('BitsAllocated')} {allocated}: 8 or 16 for grayscale")
    if stored is None or not 1 <= stored <= allocated:
        raise InvalidInput(f"{describe('BitsStored')} {stored} does not fit Bits Allocated")
    if high != stored - 1:  # PS3.3 C.8.11.7 (DX Image Module): High Bit = Bits Stored - 1
        raise InvalidInput(f"{describe('HighBit')} {high} is not Bits Stored - 1 ({stored - 1})")
    frames = number_of_frames(ds)
    if frames is not None and frames < 1:
        raise InvalidInput(f"{describe('NumberOfFrames')} {frames}: an image has at least one")


def check_breast_present(pixels: npt.NDArray[np.floating]) -> None:
    """After decoding: some tissue stands out from the background (not a blank image)."""
    if pixels.size == 0 or not np.isfinite(pixels).all():
        raise InvalidInput("no usable pixel values")
    darkest = float(pixels.min())
    tissue = float(np.count_nonzero(pixels > darkest + TISSUE_CONTRAST)) / pixels.size
    if tissue < MIN_TISSUE_FRACTION:
        raise InvalidInput(
            f"no breast in the image: {tissue:.1%} of it stands out from the background"
        )
