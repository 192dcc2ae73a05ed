"""Quality control at import: each refusal has a stated reason, and lands in rejected.csv.

A training set silently polluted by a For-Processing image, a blank exposure or the same image
twice (once in train, once in validation) gives numbers that mean nothing; so every check
here names what it found.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

# Reasons, as written in rejected.csv.
WRONG_MODALITY: Final = "wrong-modality"
FOR_PROCESSING: Final = "for-processing"
UNREADABLE: Final = "unreadable"
BLANK: Final = "blank"
SATURATED: Final = "saturated"
DUPLICATE: Final = "duplicate"
NO_LABEL: Final = "no-label"
MISSING_FILE: Final = "missing-file"
NO_PATIENT: Final = "no-patient-id"
ROI_CROP: Final = "roi-crop"  # CBIS-DDSM's lesion crop: the full image and its mask suffice
NO_IMAGE: Final = "mask-without-image"
BAD_MASK: Final = "bad-mask"

# PS3.4 B.5: Digital Mammography / Digital X-Ray - For Processing storage SOP classes.
FOR_PROCESSING_SOP_CLASSES: Final = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image - For Processing
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image - For Processing
        "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray Image - For Processing
    }
)
BLANK_STD: Final = 0.01  # presentation pixels in [0, 1]
MIN_TISSUE_FRACTION: Final = 0.02
SATURATED_FRACTION: Final = 0.3


def check_header(ds: Dataset, modalities: frozenset[str]) -> tuple[str, str] | None:
    """(reason, detail) when the header says this is no image to learn from, else None."""
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality not in modalities:
        return (
            WRONG_MODALITY,
            f"Modality (0008,0060) {modality or 'absent'}, want {sorted(modalities)}",
        )
    intent = str(ds.get("PresentationIntentType", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if intent == "FOR PROCESSING" or sop_class in FOR_PROCESSING_SOP_CLASSES:
        # PS3.3 C.8.11.1.1.1: For-Processing pixels are raw detector data, not what is read.
        return FOR_PROCESSING, f"Presentation Intent {intent or '-'}, SOP Class {sop_class}"
    return None


def check_pixels(pixels: npt.NDArray[np.floating]) -> tuple[str, str] | None:
    """(reason, detail) for a blank or saturated image (presentation pixels in [0, 1])."""
    values = np.asarray(pixels, dtype=np.float32)
    std = float(values.std())
    tissue = float((values > 0.05).mean())
    if std < BLANK_STD or tissue < MIN_TISSUE_FRACTION:
        return BLANK, f"pixel std {std:.4f}, tissue fraction {tissue:.3f}"
    saturated = float((values >= 0.999).mean())
    if saturated > SATURATED_FRACTION:
        return SATURATED, f"{saturated:.0%} of pixels at the maximum (inverted or over-exposed?)"
    return None
