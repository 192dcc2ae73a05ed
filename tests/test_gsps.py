"""GSPS overlays: one per image, a circle and a label per finding, valid under dciodvfy."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from test_writers import IGNORED_WARNING, _exam
from validators import dciodvfy_errors, dciodvfy_output, write_part10

from node.writers import output_uid
from node.writers.gsps import build_presentation_states
from node.writers.seg import finding_tracking


@functools.cache
def _states() -> tuple[Dataset, ...]:
    sources, exam = _exam()
    return tuple(build_presentation_states(sources, exam))


def _layer(state: Dataset, name: str) -> Dataset:
    (annotation,) = [a for a in state.GraphicAnnotationSequence if a.GraphicLayer == name]
    return annotation


def test_every_state_passes_dciodvfy(tmp_path: Path) -> None:
    for index, state in enumerate(_states()):
        path = write_part10(state, tmp_path / f"gsps{index}.dcm")
        assert dciodvfy_errors(path) == [], dciodvfy_output(path)
        assert [line for line in dciodvfy_output(path)[1:] if IGNORED_WARNING not in line] == []


def test_each_state_references_its_image_and_breast() -> None:
    sources, exam = _exam()
    for source, state in zip(sources, _states(), strict=True):
        referenced = state.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
        assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert state.Laterality == source.ImageLaterality
        assert state.SOPInstanceUID == output_uid(exam, "GSPS", source.SOPInstanceUID)
        assert "not for clinical use" in state.SeriesDescription
    right, left = _states()[0], _states()[1]
    assert right.SeriesInstanceUID != left.SeriesInstanceUID  # one series per breast
    assert right.SeriesInstanceUID == _states()[2].SeriesInstanceUID


def test_one_circle_and_label_per_finding() -> None:
    _, exam = _exam()
    state, image = _states()[0], exam.images[0]  # R CC, one finding
    findings = _layer(state, "AI FINDINGS")
    (circle,) = findings.GraphicObjectSequence
    finding = image.prediction.findings[0]
    assert circle.GraphicType == "CIRCLE" and circle.GraphicAnnotationUnits == "PIXEL"
    assert [float(v) for v in circle.GraphicData[:2]] == pytest.approx(
        [finding.column, finding.row]
    )
    assert circle.TrackingUID == finding_tracking(exam, image, 0)[1]  # the SEG segment's
    (label,) = findings.TextObjectSequence
    assert label.UnformattedTextValue == "1: Density (one view) 83%"  # as PDF and CAD SR name it
    summary = _layer(state, "AI SUMMARY").TextObjectSequence[0].UnformattedTextValue
    assert "image score 83% (at or above operating point 50%)" in summary
    assert "NOT FOR CLINICAL USE" in summary


def test_image_without_finding_has_only_the_summary() -> None:
    state = _states()[1]  # L CC, no finding
    assert [a.GraphicLayer for a in state.GraphicAnnotationSequence] == ["AI SUMMARY"]
    text = state.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue
    assert "no findings" in text and "below operating point" in text


def test_same_exam_same_uids_and_bad_finding_raises() -> None:
    sources, exam = _exam()
    again = build_presentation_states(sources, exam)
    assert [s.SOPInstanceUID for s in again] == [s.SOPInstanceUID for s in _states()]
    first = exam.images[0]
    outside = replace(first.prediction.findings[0], column=10_000.0)
    broken = replace(first, prediction=replace(first.prediction, findings=[outside]))
    with pytest.raises(ValueError, match="not a circle on the image"):
        build_presentation_states(sources, replace(exam, images=[broken, *exam.images[1:]]))
