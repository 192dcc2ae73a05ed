"""highdicom's IOD look-up, kept per question, answers as highdicom itself does."""

from __future__ import annotations

import highdicom._standard_utils as standard_utils
import highdicom.base
import highdicom.sr.content
import pytest
from pydicom.uid import (
    BasicTextSRStorage,
    ComprehensiveSRStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    GrayscaleSoftcopyPresentationStateStorage,
    SegmentationStorage,
)

from node.writers import iod_lookup

SOP_CLASSES = [
    DigitalMammographyXRayImageStorageForPresentation,
    SegmentationStorage,
    ComprehensiveSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    BasicTextSRStorage,
]
ATTRIBUTES = ["NumberOfFrames", "ContentDate", "ContentTime", "PixelData", "TotalPixelMatrixRows"]


@pytest.mark.parametrize("sop_class_uid", SOP_CLASSES)
@pytest.mark.parametrize("exclude", [None, ["IconImageSequence"]])
def test_every_answer_is_highdicoms(sop_class_uid: str, exclude: list[str] | None) -> None:
    for attribute in ATTRIBUTES:
        expected = iod_lookup._lookup(attribute, sop_class_uid, exclude)
        assert iod_lookup.is_attribute_in_iod(attribute, sop_class_uid, exclude) is expected
        assert iod_lookup.is_attribute_in_iod(attribute, sop_class_uid, exclude) is expected


def test_the_answers_differ_where_the_standard_does() -> None:
    """Not a constant: a mammogram has pixel data and no frames, a SEG has both."""
    ask = iod_lookup.is_attribute_in_iod
    mammogram = DigitalMammographyXRayImageStorageForPresentation
    assert (ask("NumberOfFrames", mammogram), ask("NumberOfFrames", SegmentationStorage)) == (
        False,
        True,
    )
    assert ask("PixelData", mammogram, ["IconImageSequence"])
    assert not ask("PixelData", ComprehensiveSRStorage, ["IconImageSequence"])


def test_an_unknown_sop_class_is_still_refused() -> None:
    with pytest.raises(KeyError, match="No IOD found"):
        iod_lookup.is_attribute_in_iod("NumberOfFrames", "1.2.3.4")


def test_highdicom_calls_the_kept_look_up() -> None:
    for module in (standard_utils, highdicom.base, highdicom.sr.content):
        assert module.is_attribute_in_iod is iod_lookup.is_attribute_in_iod
