"""FRACTIONAL SEG of the heatmap: valid, on the right image, values within one step."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from test_writers import IGNORED_WARNING, _exam
from validators import dciodvfy_errors, dciodvfy_output, write_part10

from node.writers import output_uid
from node.writers.heatmap_seg import MAX_FRACTIONAL_VALUE, build_heatmap_segmentations


@functools.cache
def _segs() -> tuple[Dataset, ...]:
    sources, exam = _exam()
    return tuple(build_heatmap_segmentations(sources, exam))


def test_every_seg_passes_dciodvfy(tmp_path: Path) -> None:
    for index in (0, 1):  # one image with a finding, one without
        path = write_part10(_segs()[index], tmp_path / f"heat{index}.dcm")
        assert dciodvfy_errors(path) == [], dciodvfy_output(path)
        assert [line for line in dciodvfy_output(path)[1:] if IGNORED_WARNING not in line] == []


def test_fractional_probability_on_its_source() -> None:
    sources, exam = _exam()
    for source, seg in zip(sources, _segs(), strict=True):
        assert (seg.SegmentationType, seg.SegmentationFractionalType) == (
            "FRACTIONAL",
            "PROBABILITY",
        )
        assert seg.MaximumFractionalValue == MAX_FRACTIONAL_VALUE
        referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert seg.SOPInstanceUID == output_uid(exam, "heatmap SEG", source.SOPInstanceUID)
        assert list(seg.PatientOrientation) == list(source.PatientOrientation)
        modifier = seg.SegmentSequence[0].AnatomicRegionSequence[0].AnatomicRegionModifierSequence
        assert modifier[0].CodeMeaning == {"R": "Right", "L": "Left"}[source.ImageLaterality]
    # One series per image: OHIF shows only the last SEG instance of a series.
    assert len({seg.SeriesInstanceUID for seg in _segs()}) == len(_segs())


def test_pixels_round_trip_within_the_quantisation_step() -> None:
    _, exam = _exam()
    for seg, image in zip(_segs(), exam.images, strict=True):
        stored = seg.pixel_array.astype(np.float64) / MAX_FRACTIONAL_VALUE
        error = np.abs(stored - image.prediction.heatmap).max()
        assert error <= 0.5 / MAX_FRACTIONAL_VALUE + 1e-6


@settings(max_examples=10, deadline=None)
@given(st.floats(0.0, 1.0, allow_nan=False, width=32))
def test_any_probability_round_trips(value: float) -> None:
    sources, exam = _exam()
    first = exam.images[0]
    heat = np.full_like(first.prediction.heatmap, value)
    flat = replace(
        exam, images=[replace(first, prediction=replace(first.prediction, heatmap=heat))]
    )
    (seg,) = build_heatmap_segmentations(sources[:1], flat)
    assert abs(int(seg.pixel_array[0, 0]) / MAX_FRACTIONAL_VALUE - value) <= 0.5 / 255 + 1e-6


def test_a_heatmap_that_is_not_a_probability_raises() -> None:
    sources, exam = _exam()
    first = exam.images[0]
    hot = replace(first, prediction=replace(first.prediction, heatmap=first.prediction.heatmap * 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        build_heatmap_segmentations(sources, replace(exam, images=[hot, *exam.images[1:]]))


@pytest.mark.parametrize("top", [1.0, 1.5])
def test_the_range_check_answers_as_highdicom_does(top: float) -> None:
    # The writer's one-segment check (min and max) against highdicom's own (np.unique).
    from highdicom.seg import Segmentation, SegmentationTypeValues

    from node.writers.heatmap_seg import _ProbabilitySegmentation

    array = np.linspace(0.0, top, 4 * 5, dtype=np.float32).reshape(1, 4, 5, 1)
    arguments = (array, np.array([1]), SegmentationTypeValues.FRACTIONAL, np.uint8)
    answers = []
    for check in (
        Segmentation._check_and_cast_pixel_array,
        _ProbabilitySegmentation._check_and_cast_pixel_array,
    ):
        try:
            pixels, overlap = check(*arguments)
            answers.append((np.asarray(pixels).tobytes(), overlap))
        except ValueError as error:
            answers.append(("ValueError", str(error)))
    assert answers[0] == answers[1]
