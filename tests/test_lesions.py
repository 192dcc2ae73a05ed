"""One lesion across views and outputs: matching, location, and outputs that survive a bad mark."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pydicom.dataset import Dataset
from test_writers import _exam

from node.domain import ExamResult, Finding
from node.writers.gsps import build_presentation_states
from node.writers.locales import LANGUAGES, load_locale
from node.writers.location import Placement, breast_geometry, clock_hour, quadrant
from node.writers.matching import exam_lesions, finding_concept
from node.writers.outputs import OUTPUT_KINDS, build_outputs
from node.writers.seg import pair_sources


def _with_findings(exam: ExamResult, found: dict[str, list[Finding]]) -> ExamResult:
    images = []
    for image in exam.images:
        key = f"{image.source.ImageLaterality} {image.source.ViewPosition}"
        findings = found.get(key, [])
        prediction = replace(image.prediction, findings=findings)
        images.append(replace(image, prediction=prediction))
    return replace(exam, images=images)


def _at_depth(sources: list[Dataset], key: str, depth: float, row: float, score: float) -> Finding:
    """A finding ``depth`` of the way from the nipple to the chest wall on view ``key``."""
    source = next(ds for ds in sources if f"{ds.ImageLaterality} {ds.ViewPosition}" == key)
    geometry = breast_geometry(source, str(source.ImageLaterality))
    direction = 1.0 if geometry.chest_wall_column > geometry.nipple_column else -1.0
    column = geometry.nipple_column + direction * depth * geometry.nipple_to_chest_wall
    return Finding(column=column, row=row, radius=6.0, score=score)


def test_same_depth_and_score_on_cc_and_mlo_is_one_lesion() -> None:
    sources, exam = _exam()
    found = {
        "R CC": [_at_depth(sources, "R CC", 0.5, 100.0, 0.8)],
        "R MLO": [_at_depth(sources, "R MLO", 0.55, 90.0, 0.75)],
        "L CC": [_at_depth(sources, "L CC", 0.2, 120.0, 0.3)],
        "L MLO": [_at_depth(sources, "L MLO", 0.8, 120.0, 0.3)],  # another depth: not the same
    }
    lesions = exam_lesions(pair_sources(sources, _with_findings(exam, found)))
    assert [(lesion.number, lesion.views) for lesion in lesions] == [
        (1, "R CC + R MLO"),
        (2, "L CC"),  # equal scores: by breast, then view
        (3, "L MLO"),
    ]
    mass = lesions[0]
    assert mass.composite and mass.score == 0.8
    assert mass.concept == finding_concept("mass", 2)  # CID 6016 Mammographic breast mass
    assert mass.concept.value == "129788004" and mass.label_key == "kind_mass"
    assert lesions[1].concept.value == "129793001" and lesions[1].label_key == "kind_density"
    # Both axes known for the matched lesion: a clock hour and a quadrant.
    assert mass.clock_hour in range(1, 13) and mass.quadrant is not None
    assert lesions[1].clock_hour is None and lesions[1].quadrant is None
    assert mass.placement.depth == "middle"


def test_clock_face_is_seen_facing_the_patient() -> None:
    upper_outer = Placement("middle", None, superior=0.3, lateral=0.3)
    assert quadrant(upper_outer) == "upper outer"
    assert clock_hour(upper_outer, "R") == 10 and clock_hour(upper_outer, "L") == 2
    lower_inner = Placement("anterior", 20.0, superior=-0.3, lateral=-0.3)
    assert clock_hour(lower_inner, "R") == 4 and clock_hour(lower_inner, "L") == 8
    assert clock_hour(Placement("middle", None, superior=0.4, lateral=0.0), "R") == 12
    assert clock_hour(Placement("middle", None, superior=None, lateral=0.4), "R") is None


def test_geometry_puts_the_chest_wall_where_patient_orientation_says() -> None:
    sources, _ = _exam()
    for ds in sources:
        geometry = breast_geometry(ds, str(ds.ImageLaterality))
        towards_nipple = str(ds.PatientOrientation[0])[0]  # "A": the nipple is to the right
        assert (geometry.chest_wall_column == 0.0) == (towards_nipple == "A")
        assert 0 < geometry.nipple_row < ds.Rows and 0 <= geometry.nipple_column <= ds.Columns


def test_one_bad_mark_fails_only_its_output_kind() -> None:
    sources, exam = _exam()
    first = exam.images[0]
    outside = replace(first.prediction.findings[0], column=10_000.0)  # centre off the image
    broken = replace(
        exam,
        images=[
            replace(first, prediction=replace(first.prediction, findings=[outside])),
            *exam.images[1:],
        ],
    )
    built = build_outputs(sources, broken, kinds=["gsps", "cad_sr", "summary_pdf"])
    assert set(built.failures) == {"gsps", "cad_sr"}  # CAD SR: the outline is off the image too
    assert "not a circle on the image" in built.failures["gsps"]
    assert [output.kind for output in built] == ["summary_pdf"]
    with pytest.raises(ValueError, match="no output could be built"):
        build_outputs(sources, broken, kinds=["gsps"])


def test_gsps_circle_past_the_edge_is_clipped() -> None:
    sources, exam = _exam()
    first = exam.images[0]
    columns = int(sources[0].Columns)
    edge = replace(first.prediction.findings[0], column=columns - 3.0, radius=40.0)
    near = replace(
        exam,
        images=[
            replace(first, prediction=replace(first.prediction, findings=[edge])),
            *exam.images[1:],
        ],
    )
    state = build_presentation_states(sources, near)[0]
    circle = state.GraphicAnnotationSequence[0].GraphicObjectSequence[0]
    points = np.asarray(circle.GraphicData, dtype=float).reshape(-1, 2)
    assert points[:, 0].max() <= columns - 1 and points[:, 0].min() >= 0


def test_every_result_series_has_its_own_number_and_contribution_time() -> None:
    sources, exam = _exam()
    built = build_outputs(sources, exam, kinds=list(OUTPUT_KINDS))
    assert built.failures == {}
    numbers: dict[str, int] = {}
    for output in built:
        ds = output.dataset
        numbers.setdefault(str(ds.SeriesInstanceUID), int(ds.SeriesNumber))
        model = [i for i in ds.ContributingEquipmentSequence if "DeviceUID" in i]
        assert model and model[0].ContributionDateTime
    assert len(set(numbers.values())) == len(numbers)
    (summary,) = [o.dataset for o in built if o.kind == "summary_sc"]
    assert summary.ImageLaterality == "B" and "Laterality" not in summary  # both breasts


@pytest.mark.parametrize("language", LANGUAGES)
def test_scores_are_rounded_as_a_reader_reads_them(language: str) -> None:
    locale = load_locale(language)
    assert locale.score(0.999) == "> 99%" and locale.score(0.004) == "< 1%"
    assert locale.score(0.615) == locale.percent(0.615)
    assert locale.score(0.615, decimals=0) == "62%"
