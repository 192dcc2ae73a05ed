"""The outputs of an exam that spans several studies (one study per view, joined by
``exam_grouping: patient``): exam-level objects go into the exam's results study and name the
other studies' images as other-study evidence; per-image objects stay in their image's study;
every object passes dciodvfy, and both SRs pass PixelMed's template validator."""

from __future__ import annotations

import copy
import functools
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from test_writers import _exam
from validators import dciodvfy_errors, pixelmed_sr_errors, pixelmed_sr_output, write_part10

from node.domain import ExamResult, ImageResult
from node.inference.scoring import source_image
from node.writers.outputs import OUTPUT_KINDS, Output, build_outputs

EXAM_LEVEL = {"tid1500", "cad_sr", "summary_sc", "summary_pdf"}
PER_IMAGE = {"seg", "gsps", "heatmap_seg", "heatmap_bands"}


@functools.cache
def _per_view_exam() -> tuple[tuple[Dataset, ...], ExamResult]:
    """The synthetic exam with each view in its own study; results study: the third's."""
    sources, exam = _exam()
    copies = []
    for original in sources:
        # A deep copy: pydicom.Dataset(original) shares the element dict, so new UIDs
        # would leak into test_writers' cached exam.
        ds = copy.deepcopy(original)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        copies.append(ds)
    images = [
        ImageResult(source_image(ds), image.prediction)
        for ds, image in zip(copies, exam.images, strict=True)
    ]
    return tuple(copies), replace(exam, StudyInstanceUID=copies[2].StudyInstanceUID, images=images)


@functools.cache
def _outputs() -> tuple[Output, ...]:
    sources, exam = _per_view_exam()
    built = build_outputs(sources, exam, kinds=list(OUTPUT_KINDS))
    assert built.failures == {}
    return tuple(built)


def _referenced_sources(ds: Dataset) -> set[str]:
    """SOP Instance UIDs an output names as its source images, wherever the IOD keeps them."""
    found: set[str] = set()
    for keyword in ("SourceImageSequence", "SourceInstanceSequence", "ReferencedImageSequence"):
        found |= {str(item.ReferencedSOPInstanceUID) for item in ds.get(keyword, [])}
    for series in ds.get("ReferencedSeriesSequence", []):
        for keyword in ("ReferencedInstanceSequence", "ReferencedImageSequence"):
            found |= {str(item.ReferencedSOPInstanceUID) for item in series.get(keyword, [])}
    return found


def test_exam_level_results_are_in_the_results_study_only() -> None:
    _, exam = _per_view_exam()
    for output in _outputs():
        if output.kind in EXAM_LEVEL:
            assert output.dataset.StudyInstanceUID == exam.StudyInstanceUID, output.kind
    kinds = {output.kind for output in _outputs()}
    assert kinds == EXAM_LEVEL | PER_IMAGE


def test_per_image_results_stay_in_their_images_study() -> None:
    sources, _ = _per_view_exam()
    study_of = {str(ds.SOPInstanceUID): str(ds.StudyInstanceUID) for ds in sources}
    seen: dict[str, set[str]] = {}
    for output in _outputs():
        if output.kind not in PER_IMAGE:
            continue
        ds = output.dataset
        referenced = _referenced_sources(ds)
        assert len(referenced) == 1, output.kind
        (source,) = referenced
        assert ds.StudyInstanceUID == study_of[source], output.kind
        seen.setdefault(output.kind, set()).add(source)
    assert all(len(sources_seen) == 4 for sources_seen in seen.values()), seen
    # A series lies in one study (PS3.3 C.7.3.1): the two right-breast GSPS are in two.
    series_studies: dict[str, set[str]] = {}
    for output in _outputs():
        ds = output.dataset
        series_studies.setdefault(str(ds.SeriesInstanceUID), set()).add(str(ds.StudyInstanceUID))
    assert all(len(studies) == 1 for studies in series_studies.values())


@pytest.mark.parametrize("kind", ["tid1500", "cad_sr"])
def test_srs_name_the_other_studies_images_as_other_evidence(kind: str) -> None:
    sources, exam = _per_view_exam()
    (sr,) = [o.dataset for o in _outputs() if o.kind == kind]
    (current,) = sr.CurrentRequestedProcedureEvidenceSequence  # PS3.3 C.17.2
    assert current.StudyInstanceUID == exam.StudyInstanceUID
    others = {item.StudyInstanceUID for item in sr.PertinentOtherEvidenceSequence}
    assert others == {str(ds.StudyInstanceUID) for ds in sources} - {exam.StudyInstanceUID}
    named = {
        str(sop.ReferencedSOPInstanceUID)
        for study in [current, *sr.PertinentOtherEvidenceSequence]
        for series in study.ReferencedSeriesSequence
        for sop in series.ReferencedSOPSequence
    }
    assert {str(ds.SOPInstanceUID) for ds in sources} <= named


def test_the_summary_shows_and_names_all_four_views() -> None:
    sources, _ = _per_view_exam()
    for kind in ("summary_sc", "summary_pdf"):
        (ds,) = [o.dataset for o in _outputs() if o.kind == kind]
        assert _referenced_sources(ds) == {str(s.SOPInstanceUID) for s in sources}, kind


def test_no_source_in_the_results_study_is_refused() -> None:
    sources, exam = _per_view_exam()
    elsewhere = replace(exam, StudyInstanceUID=generate_uid())
    with pytest.raises(ValueError, match="no source is in the exam's study"):
        build_outputs(sources, elsewhere, kinds=["seg"])


def test_every_output_passes_dciodvfy(tmp_path: Path) -> None:
    for number, output in enumerate(_outputs()):
        path = write_part10(output.dataset, tmp_path / f"{number}-{output.kind}.dcm")
        assert dciodvfy_errors(path) == [], output.kind


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cad_sr", "tid1500"])
def test_srs_pass_pixelmed_template_validation(kind: str, tmp_path: Path) -> None:
    (sr,) = [o.dataset for o in _outputs() if o.kind == kind]
    path = write_part10(sr, tmp_path / f"{kind}.dcm")
    assert pixelmed_sr_errors(path) == [], "\n".join(pixelmed_sr_output(path))
