"""BINARY SEG of the heatmap in probability bands: valid, on its image, bands that do not overlap."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from test_writers import IGNORED_WARNING, _exam
from validators import dciodvfy_errors, dciodvfy_output, write_part10

from node.writers import output_uid
from node.writers.heatmap_bands import (
    BANDS,
    band_label,
    band_masks,
    build_heatmap_band_segmentations,
)
from node.writers.outputs import build_outputs


def _bands_by_comparison(heatmap: np.ndarray) -> list[np.ndarray]:
    """The bands as the module docstring defines them, one comparison per bound."""
    upper = (*BANDS[1:], np.inf)
    return [(heatmap >= low) & (heatmap < high) for low, high in zip(BANDS, upper, strict=True)]


@functools.cache
def _segs() -> tuple[Dataset, ...]:
    sources, exam = _exam()
    return tuple(build_heatmap_band_segmentations(sources, exam))


def test_every_seg_passes_dciodvfy(tmp_path: Path) -> None:
    for index in (0, 1):  # one image with a finding, one without
        path = write_part10(_segs()[index], tmp_path / f"bands{index}.dcm")
        assert dciodvfy_errors(path) == [], dciodvfy_output(path)
        assert [line for line in dciodvfy_output(path)[1:] if IGNORED_WARNING not in line] == []


def test_binary_bands_on_their_source_with_a_legend() -> None:
    sources, exam = _exam()
    for source, seg, image in zip(sources, _segs(), exam.images, strict=True):
        assert seg.SegmentationType == "BINARY"
        assert seg.SOPInstanceUID == output_uid(exam, "heatmap bands SEG", source.SOPInstanceUID)
        referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
        labels = [segment.SegmentLabel for segment in seg.SegmentSequence]
        assert labels == [band_label(i) for i in range(len(BANDS))]
        assert labels[0] == "Lesion probability 25-50%" and labels[-1].endswith("90-100%")
        colours = {tuple(s.RecommendedDisplayCIELabValue) for s in seg.SegmentSequence}
        assert len(colours) == len(BANDS)  # one colour per band
        # The frames are the bands of the heatmap (one frame per segment, in order).
        frames = seg.pixel_array.reshape(len(BANDS), *image.prediction.heatmap.shape)
        bands = _bands_by_comparison(image.prediction.heatmap)
        for frame, mask in zip(frames, bands, strict=True):
            assert np.array_equal(frame.astype(bool), mask)
    assert len({seg.SeriesInstanceUID for seg in _segs()}) == len(_segs())


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 1.0, allow_nan=False, width=32))
def test_each_probability_falls_in_at_most_one_band(value: float) -> None:
    masks = band_masks(np.full((2, 3), value, dtype=np.float32))
    hits = [i for i, mask in enumerate(masks) if mask.all()]
    assert sum(mask.any() for mask in masks) == len(hits) <= 1
    bounds = [np.float32(bound) for bound in BANDS]  # the map's dtype decides a tie
    if value < bounds[0]:
        assert hits == []
    else:
        (band,) = hits
        assert bounds[band] <= value and (band + 1 == len(BANDS) or value < bounds[band + 1])


def test_values_on_and_beside_each_bound_fall_as_the_comparisons_say() -> None:
    # The label map (one searchsorted) must agree with the float32 comparisons exactly,
    # also on a bound and one ulp either side of it.
    values = [0.0, 1.0]
    for bound in BANDS:
        b = np.float32(bound)
        values += [b, np.nextafter(b, np.float32(0)), np.nextafter(b, np.float32(1))]
    heatmap = np.array(values, dtype=np.float32).reshape(1, -1)
    for mask, expected in zip(band_masks(heatmap), _bands_by_comparison(heatmap), strict=True):
        assert np.array_equal(mask, expected)


def test_a_heatmap_that_is_not_a_probability_raises() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        band_masks(np.full((2, 2), 1.5, dtype=np.float32))


def test_it_is_an_output_kind() -> None:
    sources, exam = _exam()
    built = build_outputs(sources, exam, kinds=["heatmap_bands"])
    assert {output.kind for output in built} == {"heatmap_bands"}
    assert len(built) == len(sources)
