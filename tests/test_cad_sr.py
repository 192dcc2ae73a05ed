"""Mammography CAD SR (TID 4000) from template data, checked with dciodvfy and DCMTK."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from test_writers import IGNORED_WARNING, _exam, _outputs
from validators import dciodvfy_errors, dciodvfy_output, dsr2html, dsrdump, write_part10

from node.writers import output_uid
from node.writers.cad_sr import MAMMOGRAPHY_CAD_SR_STORAGE, build_mammography_cad_report
from node.writers.sr import build_measurement_report
from node.writers.templates import TemplateError, load_template

REQUIRED = '(111150,DCM,"Presentation Required: Rendering device is expected to present")'
OPTIONAL = '(111151,DCM,"Presentation Optional: Rendering device may present")'


@functools.cache
def _report(density: bool = False) -> Dataset:
    sources, exam = _exam()
    if density:
        images = [replace(i, prediction=replace(i.prediction, density="c")) for i in exam.images]
        images[0] = replace(images[0], prediction=replace(images[0].prediction, density="d"))
        exam = replace(exam, images=images)
    return build_mammography_cad_report(sources, exam)


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_part10(_report(), tmp_path_factory.mktemp("cad") / "cad.dcm")


def test_passes_dciodvfy_as_a_mammography_cad_sr(path: Path) -> None:
    lines = dciodvfy_output(path)
    assert lines[0] == "MammographyCADSR"
    assert dciodvfy_errors(path) == [], lines
    assert [line for line in lines[1:] if IGNORED_WARNING not in line] == []
    assert _report().SOPClassUID == MAMMOGRAPHY_CAD_SR_STORAGE


def test_dsrdump_shows_the_tid_4000_tree(path: Path) -> None:
    tree = dsrdump(path)
    assert '<CONTAINER:(,,"Mammography CAD Report")' in tree
    assert tree.count("<contains IMAGE:=(DXm image,)>") == 4  # TID 4020 Image Library
    assert '(111242,DCM,"All algorithms succeeded; with findings")' in tree
    assert tree.count('"Individual Impression/Recommendation"') == 2
    # The R CC finding is a mass on one view (CID 6014), 83 % >= the 50 % operating point.
    assert 'CODE:(,,"Single Image Finding")=(129793001,SCT,"Mammography breast density")' in tree
    assert REQUIRED in tree and OPTIONAL not in tree
    # Both marks are required: no CAD Operating Point bin on them (TID 4006 row 3), the bins
    # a viewer may choose from stated once per detection (TID 4023, PS3.17 E.4).
    assert '"CAD Operating Point"' not in tree
    assert 'NUM:(,,"Maximum CAD Operating Point")="10.0" ([arb\'U],UCUM,"arbitrary unit")' in tree
    assert 'NUM:(,,"Recommended CAD Operating Point")="0.0" ({0:n},UCUM,"range: 0:n")' in tree
    assert 'NUM:(,,"Probability of cancer")="83.0" (%,UCUM,"Percent")' in tree
    assert 'NUM:(,,"Certainty of Finding")=' in tree
    assert tree.count('SCOORD:(,,"Center")=(POINT,') == 2
    assert tree.count('SCOORD:(,,"Outline")=(POLYLINE,') == 2
    # R CC is item 1.2.1 of the library, L MLO item 1.2.4: each mark on its own image.
    assert tree.count("<selected from 1.2.1>") == 2 and tree.count("<selected from 1.2.4>") == 2
    # CID 6022 breasts in the Image Library (TID 4020 row 2), CID 6028 follow-up.
    assert '(80248007,SCT,"Left breast")' in tree and '(73056007,SCT,"Right breast")' in tree
    assert '(386053000,SCT,"Evaluation procedure")' in tree
    assert 'CODE:(,,"Summary of Detections")=(111222,DCM,"Succeeded")' in tree
    assert 'TEXT:(,,"Algorithm Name")="Toy Mammo"' in tree


def test_dsr2html_renders_it(path: Path) -> None:
    html = dsr2html(path)
    assert "Mammography CAD Report" in html and "Mammography breast density" in html


def test_operating_point_sets_the_rendering_intent() -> None:
    sources, exam = _exam()
    strict = replace(exam, model=replace(exam.model, operating_point=0.7))
    tree = str(build_mammography_cad_report(sources, strict).ContentSequence)
    assert "111150" in tree and "111151" in tree  # 83 % required, 61 % optional at 70 %


def test_no_finding_exam_says_so() -> None:
    sources, exam = _exam()
    images = [replace(i, prediction=replace(i.prediction, findings=[])) for i in exam.images]
    report = build_mammography_cad_report(sources, replace(exam, images=images))
    summary = report.ContentSequence[2]
    assert summary.ConceptCodeSequence[0].CodeValue == "111241"  # without findings
    assert "111034" not in str(report.ContentSequence)  # no Individual Impression


def test_breast_density_is_written_per_breast_and_exam(tmp_path: Path) -> None:
    report = _report(density=True)
    path = write_part10(report, tmp_path / "density.dcm")
    tree = dsrdump(path)
    # A TID 4006 finding of its own with TID 4007 (TID 4002 is no place for it): the densest
    # breast, as BI-RADS reports it; per breast it is in the TID 1500 report.
    assert 'CODE:(,,"Single Image Finding")=(129715009,SCT,"Breast composition")' in tree
    assert tree.count('CODE:(,,"Breast composition")=(129719003,SCT,"Extremely dense")') == 1
    assert '(133890006,SCT,"Breast composition analysis")' in tree
    assert dciodvfy_errors(path) == []
    sources, exam = _exam()
    segs = list(_outputs()[:4])
    tid1500 = build_measurement_report(sources, replace(exam, density="b"), segs)
    assert "129717001" in str(tid1500.ContentSequence)  # CID 6000 b in the TID 1500 report


def test_bad_density_raises() -> None:
    sources, exam = _exam()
    with pytest.raises(ValueError, match="ACR BI-RADS"):
        build_mammography_cad_report(sources, replace(exam, density="X"))


def test_uids_are_deterministic() -> None:
    sources, exam = _exam()
    again = build_mammography_cad_report(sources, exam)
    assert again.SOPInstanceUID == _report().SOPInstanceUID == output_uid(exam, "CAD SR")
    assert again.SeriesInstanceUID == _report().SeriesInstanceUID


def test_template_errors_are_found_at_load(tmp_path: Path) -> None:
    good = load_template("tid4000_mammography_cad.yaml")
    assert good.value("laterality", "R").value == "73056007"
    with pytest.raises(ValueError, match="one of"):
        good.value("laterality", "B")
    broken = {
        "codes": "  x: [DCM, '1', X]\n",
        "tree": "  value_type: CONTAINER\n  concept: x\n  children:\n    - {relationship: CONTAINS, value_type: NUM, concept: x, value: $v}\n",
    }
    text = (
        "template: T\nmapping_resource: DCMR\ncodes:\n"
        + broken["codes"]
        + "tree:\n"
        + broken["tree"]
    )
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(TemplateError, match="needs a unit"):
        load_template("t.yaml", tmp_path)
    (tmp_path / "u.yaml").write_text(text.replace("value_type: NUM", "value_type: BLOB"))
    with pytest.raises(TemplateError, match="value_type 'BLOB'"):
        load_template("u.yaml", tmp_path)
